// Package imagebuild builds scep-operator's container image from this
// repository with no container engine and nothing pulled: the binaries are
// cross-compiled with the local Go toolchain, the root file system a
// distroless base would carry (passwd, group, CA certificates) is written
// here, and go-containerregistry assembles an OCI image index for each
// platform. Two builds of one commit give the same digests: every time in
// the image is the commit's time, every file is owned by fixed ids, and
// every list is in a fixed order.
//
// The Dockerfile at the repository's root describes the same image for
// users with Docker; dockerfile_test.go checks that the two agree.
package imagebuild

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is, as the Dockerfile also says it.
const (
	// User is the image's user: distroless's "nonroot", which the chart's
	// securityContext also names (runAsUser and runAsGroup 65532).
	User = "65532:65532"
	// WorkingDir is the image's working directory.
	WorkingDir = "/"
	// CACertificatesPath is where Go's crypto/x509 (and SSL_CERT_FILE)
	// finds the system roots on Linux: HTTPS to a SCEP server without
	// tls.caBundle verifies against them.
	CACertificatesPath = "/etc/ssl/certs/ca-certificates.crt"
	// SBOMPath is where the image carries its own SBOM (CycloneDX JSON).
	SBOMPath = "/usr/share/doc/scep-operator/sbom.cdx.json"
	// DefaultRepository is the image's name without a tag, as the chart's
	// image.repository has it.
	DefaultRepository = "ghcr.io/scep-operator/scep-operator"
	// DefaultSource is the repository's URL (org.opencontainers.image.source).
	DefaultSource = "https://github.com/scep-operator/scep-operator"
	// versionPackage holds the variables the linker sets (internal/version).
	versionPackage = "github.com/scep-operator/scep-operator/internal/version"
)

// Binaries are the image's programs: ./cmd/NAME, installed as /NAME. The
// first is the entrypoint.
var Binaries = []string{"manager", "scepctl"}

// Env is the image's environment, as distroless/static sets it.
var Env = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=" + CACertificatesPath,
}

// DefaultPlatforms are the platforms `make image` builds.
var DefaultPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
}

// Options says what to build and where to write it.
type Options struct {
	// Root is the repository's root directory (holding go.mod).
	Root string
	// Out is the directory written: oci/ (an OCI image layout), Tarball,
	// and one SBOM per platform. oci/ and the files this package writes
	// are replaced; nothing else in Out is touched.
	Out string
	// Repository is the image's name without a tag (DefaultRepository).
	Repository string
	// Version is the release (the tag, the version label, and the
	// binaries' internal/version), e.g. "0.1.0".
	Version string
	// Revision is the git commit built (the revision label and the
	// binaries' internal/version).
	Revision string
	// Created is the time every timestamp in the image carries: the
	// commit's time (SOURCE_DATE_EPOCH), so that builds of one commit agree.
	Created time.Time
	// Source is the repository's URL (DefaultSource).
	Source string
	// Platforms are the platforms of the index (DefaultPlatforms).
	Platforms []v1.Platform
	// ArchivePlatform picks the image that the tarball's manifest.json
	// (the `docker load` format, one platform only) names; default: the
	// platform of this machine's architecture, else the first.
	ArchivePlatform string
	// Go is the go command (default "go").
	Go string
	// Log receives a line per step (nil: none).
	Log io.Writer

	// compile replaces Compile in the tests about packaging, and
	// gzipLevel (default gzip.BestCompression) BestSpeed: their
	// binaries are large.
	compile   func(context.Context, Options, v1.Platform, string) (map[string][]byte, error)
	gzipLevel int
}

// Tarball is the name of the image tarball in Options.Out.
const Tarball = "scep-operator.tar"

// Result is what Build wrote.
type Result struct {
	// Tag is the image's reference, Repository:Version.
	Tag name.Tag
	// Index is the multi-platform image index.
	Index v1.ImageIndex
	// Images are the index's images, in Platforms order.
	Images []PlatformImage
	// Layout is the OCI image layout directory, Tarball the tarball.
	Layout, Tarball string
	// ArchivePlatform is the platform the tarball's manifest.json names.
	ArchivePlatform string
}

// PlatformImage is one platform's image in the index.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
	// SBOM is the SBOM in the image (at SBOMPath) and beside it (in Out).
	SBOM []byte
	// SBOMFile is the SBOM's path in Options.Out.
	SBOMFile string
}

// safeValue is what a version or revision may hold: they are passed to the
// linker with -X, where a space would end the value, and end up in a tag.
var safeValue = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)

func (o *Options) complete() error {
	if o.Root == "" || o.Out == "" {
		return errors.New("imagebuild: Root and Out are required")
	}
	if o.Repository == "" {
		o.Repository = DefaultRepository
	}
	if o.Source == "" {
		o.Source = DefaultSource
	}
	if len(o.Platforms) == 0 {
		o.Platforms = DefaultPlatforms
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.compile == nil {
		o.compile = Compile
	}
	if o.gzipLevel == 0 {
		o.gzipLevel = gzip.BestCompression
	}
	if !safeValue.MatchString(o.Version) {
		return fmt.Errorf("imagebuild: version %q: want letters, digits and . _ + - (a tag)", o.Version)
	}
	if !safeValue.MatchString(o.Revision) {
		return fmt.Errorf("imagebuild: revision %q: want a commit id", o.Revision)
	}
	if o.Created.IsZero() {
		return errors.New("imagebuild: Created is required (the commit's time): a build at 'now' could not be reproduced")
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	if o.ArchivePlatform == "" {
		o.ArchivePlatform = platformString(o.Platforms[0])
		for _, p := range o.Platforms {
			if p.Architecture == runtime.GOARCH {
				o.ArchivePlatform = platformString(p)
				break
			}
		}
	}
	for _, p := range o.Platforms {
		if platformString(p) == o.ArchivePlatform {
			return nil
		}
	}
	return fmt.Errorf("imagebuild: archive platform %s is not one of the platforms built", o.ArchivePlatform)
}

// ParsePlatform reads "os/arch" or "os/arch/variant"; linux/arm64 gets the
// variant v8, as Docker and BuildKit write it.
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	} else if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Labels are the image's OCI labels (also the index's annotations).
func Labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.created":  o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.title":    "scep-operator",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
}

// Build compiles the binaries for every platform, assembles the image index
// and writes it to o.Out as an OCI layout, a tarball and SBOMs.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.complete(); err != nil {
		return nil, err
	}
	tag, err := name.NewTag(o.Repository + ":" + o.Version)
	if err != nil {
		return nil, fmt.Errorf("image reference: %w", err)
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "imagebuild-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(tmp) }()

	fallback, err := moduleVersion(ctx, o, fallbackModule)
	if err != nil {
		return nil, err
	}
	base, err := baseLayer(o.Created, o.gzipLevel, fallback)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	res := &Result{Tag: tag, ArchivePlatform: o.ArchivePlatform}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		start := time.Now()
		bins, err := o.compile(ctx, o, p, filepath.Join(tmp, p.OS+"-"+p.Architecture))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "compiled %s for %s (%s)\n", strings.Join(Binaries, ", "), platformString(p), time.Since(start).Round(time.Millisecond))
		sbom, err := SBOM(o, p, bins)
		if err != nil {
			return nil, fmt.Errorf("SBOM for %s: %w", platformString(p), err)
		}
		img, err := platformImage(o, p, base, bins, sbom)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", platformString(p), err)
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		res.Images = append(res.Images, PlatformImage{Platform: p, Image: img, SBOM: sbom})
	}
	res.Index = mutate.Annotations(idx, Labels(o)).(v1.ImageIndex)

	res.Layout = filepath.Join(o.Out, "oci")
	if err := writeLayout(res.Layout, res.Index, tag); err != nil {
		return nil, fmt.Errorf("writing the OCI layout %s: %w", res.Layout, err)
	}
	var archived v1.Image
	for _, pi := range res.Images {
		if platformString(pi.Platform) == o.ArchivePlatform {
			archived = pi.Image
		}
	}
	res.Tarball = filepath.Join(o.Out, Tarball)
	if err := writeArchive(res.Tarball, res.Layout, archived, tag, o.Created); err != nil {
		return nil, fmt.Errorf("writing the image tarball %s: %w", res.Tarball, err)
	}
	for i, pi := range res.Images {
		f := filepath.Join(o.Out, "sbom."+pi.Platform.OS+"-"+pi.Platform.Architecture+".cdx.json")
		if err := os.WriteFile(f, pi.SBOM, 0o644); err != nil {
			return nil, err
		}
		res.Images[i].SBOMFile = f
	}
	return res, nil
}

// platformImage assembles one platform's image: the base layer, then the
// binaries and the SBOM, and a config as the Dockerfile's.
func platformImage(o Options, p v1.Platform, base v1.Layer, bins map[string][]byte, sbom []byte) (v1.Image, error) {
	app, err := appLayer(o.Created, o.gzipLevel, bins, sbom)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	created := v1.Time{Time: o.Created}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created, CreatedBy: "hack/image: /etc/passwd, /etc/group, " + CACertificatesPath + ", /home/nonroot, /tmp", Comment: "the files of gcr.io/distroless/static:nonroot that scep-operator needs"}},
		mutate.Addendum{Layer: app, History: v1.History{Created: created, CreatedBy: "hack/image: /" + strings.Join(Binaries, ", /") + ", " + SBOMPath}},
	)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Author = ""
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{"/" + Binaries[0]},
		Env:        append([]string(nil), Env...),
		WorkingDir: WorkingDir,
		Labels:     Labels(o),
	}
	return mutate.ConfigFile(img, cf)
}
