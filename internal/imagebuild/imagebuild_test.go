package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fakeBuild runs Build with this test binary standing for the binaries.
func fakeBuild(t *testing.T, mutate func(*Options)) *Result {
	t.Helper()
	o := testOptions(t, t.TempDir())
	o.compile, o.gzipLevel = fakeCompile, gzip.BestSpeed
	if mutate != nil {
		mutate(&o)
	}
	r, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPackagingReproducible: the same binaries and commit give the same
// index, manifests and tarball, byte for byte, in another directory; the
// commit's time is what the image carries, so another time changes it.
func TestPackagingReproducible(t *testing.T) {
	a, b := fakeBuild(t, nil), fakeBuild(t, nil)
	compareBuilds(t, a, b)
	later := fakeBuild(t, func(o *Options) { o.Created = commitTime.Add(time.Second) })
	if digest(t, later.Index) == digest(t, a.Index) {
		t.Error("another commit time gives the same index digest: the time is not in the image")
	}
}

// compareBuilds requires two builds to be the same image.
func compareBuilds(t *testing.T, a, b *Result) {
	t.Helper()
	if da, db := digest(t, a.Index), digest(t, b.Index); da != db {
		t.Errorf("index digests differ: %s and %s", da, db)
	}
	for i := range a.Images {
		ia, ib := a.Images[i].Image, b.Images[i].Image
		if da, db := digest(t, ia), digest(t, ib); da != db {
			t.Errorf("%s: manifest digests differ: %s and %s", platformString(a.Images[i].Platform), da, db)
		}
		ca, _ := ia.ConfigName()
		cb, _ := ib.ConfigName()
		if ca != cb {
			t.Errorf("%s: config digests differ: %s and %s", platformString(a.Images[i].Platform), ca, cb)
		}
		if !bytes.Equal(a.Images[i].SBOM, b.Images[i].SBOM) {
			t.Errorf("%s: SBOMs differ", platformString(a.Images[i].Platform))
		}
	}
	if sa, sb := fileSum(t, a.Tarball), fileSum(t, b.Tarball); sa != sb {
		t.Errorf("tarballs differ: sha256 %s and %s", sa, sb)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestIndexAndConfig: an OCI index of linux/amd64 and linux/arm64/v8 with
// the labels as annotations, and each image's config as the Dockerfile's.
func TestIndexAndConfig(t *testing.T) {
	r := fakeBuild(t, nil)
	o := testOptions(t, "")
	o.Source = DefaultSource
	im, err := r.Index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	if !reflect.DeepEqual(im.Annotations, Labels(o)) {
		t.Errorf("index annotations %v, want %v", im.Annotations, Labels(o))
	}
	var platforms []string
	for _, d := range im.Manifests {
		platforms = append(platforms, platformString(*d.Platform))
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s", platformString(*d.Platform), d.MediaType)
		}
	}
	if want := []string{"linux/amd64", "linux/arm64/v8"}; !slices.Equal(platforms, want) {
		t.Errorf("platforms %v, want %v", platforms, want)
	}
	if r.Tag.Name() != DefaultRepository+":0.1.0-test" {
		t.Errorf("tag %s", r.Tag.Name())
	}
	for _, pi := range r.Images {
		cf, err := pi.Image.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		m, err := pi.Image.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Config.MediaType != types.OCIConfigJSON {
			t.Errorf("config media type %s", m.Config.MediaType)
		}
		for _, l := range m.Layers {
			if l.MediaType != types.OCILayer {
				t.Errorf("layer media type %s", l.MediaType)
			}
		}
		want := v1.Config{User: "65532:65532", Entrypoint: []string{"/manager"}, Env: Env, WorkingDir: "/", Labels: map[string]string{
			"org.opencontainers.image.source":   "https://github.com/scep-operator/scep-operator",
			"org.opencontainers.image.version":  "0.1.0-test",
			"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
			"org.opencontainers.image.created":  "2026-11-25T10:30:00Z",
			"org.opencontainers.image.title":    "scep-operator",
			"org.opencontainers.image.licenses": "Apache-2.0",
		}}
		if !reflect.DeepEqual(cf.Config, want) {
			t.Errorf("%s: config\n%+v\nwant\n%+v", platformString(pi.Platform), cf.Config, want)
		}
		if cf.OS != pi.Platform.OS || cf.Architecture != pi.Platform.Architecture || cf.Variant != pi.Platform.Variant {
			t.Errorf("config platform %s/%s/%s, index says %s", cf.OS, cf.Architecture, cf.Variant, platformString(pi.Platform))
		}
		if !cf.Created.Equal(commitTime) {
			t.Errorf("created %s, want the commit's %s", cf.Created, commitTime)
		}
		for _, h := range cf.History {
			if !h.Created.Equal(commitTime) {
				t.Errorf("history %q created %s", h.CreatedBy, h.Created)
			}
		}
	}
}

// TestFiles: the base layer is the same blob for both platforms and holds
// distroless's users and a CA bundle Go reads; the other holds the binaries
// and the SBOM; every entry has the commit's time and numeric ids.
func TestFiles(t *testing.T) {
	r := fakeBuild(t, nil)
	var baseDigests []v1.Hash
	for _, pi := range r.Images {
		layers, err := pi.Image.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if len(layers) != 2 {
			t.Fatalf("%d layers, want 2 (base, binaries)", len(layers))
		}
		baseDigests = append(baseDigests, digest(t, layers[0]))
		files := imageFiles(t, pi.Image)
		var names []string
		for n, f := range files {
			names = append(names, n)
			h := f.hdr
			if !h.ModTime.Equal(commitTime) || h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: mtime %s, owner %q/%q: want the commit's time and numeric ids only", n, h.ModTime, h.Uname, h.Gname)
			}
			wantID := 0
			if n == "home/nonroot/" {
				wantID = 65532
			}
			if h.Uid != wantID || h.Gid != wantID {
				t.Errorf("%s: owned by %d:%d, want %d:%d", n, h.Uid, h.Gid, wantID, wantID)
			}
		}
		slices.Sort(names)
		want := []string{"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
			"home/", "home/nonroot/", "manager", "root/", "scepctl", "tmp/",
			"usr/", "usr/share/", "usr/share/doc/", "usr/share/doc/scep-operator/", "usr/share/doc/scep-operator/sbom.cdx.json"}
		if !slices.Equal(names, want) {
			t.Errorf("files\n%v\nwant\n%v", names, want)
		}
		for n, mode := range map[string]int64{"manager": 0o755, "scepctl": 0o755, "tmp/": 0o1777, "home/nonroot/": 0o700, "etc/passwd": 0o644} {
			if got := files[n].hdr.Mode; got != mode {
				t.Errorf("%s: mode %o, want %o", n, got, mode)
			}
		}
		if !strings.Contains(string(files["etc/passwd"].data), "\nnonroot:x:65532:65532:") || !strings.Contains(string(files["etc/group"].data), "\nnonroot:x:65532:\n") {
			t.Errorf("no nonroot user 65532 in /etc/passwd and /etc/group:\n%s%s", files["etc/passwd"].data, files["etc/group"].data)
		}
		if !bytes.Equal(files["usr/share/doc/scep-operator/sbom.cdx.json"].data, pi.SBOM) {
			t.Error("the SBOM in the image is not the one Build returned")
		}
		if beside, err := os.ReadFile(pi.SBOMFile); err != nil || !bytes.Equal(beside, pi.SBOM) {
			t.Errorf("the SBOM beside the image (%s, %v) is not the one in it", pi.SBOMFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(files["etc/ssl/certs/ca-certificates.crt"].data) {
			t.Error("the CA bundle holds no certificate Go can read")
		}
	}
	if baseDigests[0] != baseDigests[1] {
		t.Errorf("base layers differ between platforms: %v", baseDigests)
	}
}

// TestCACertificates: the bundle is x509roots/fallback's unconstrained
// roots, enough to verify public servers, with a header saying where it
// comes from.
func TestCACertificates(t *testing.T) {
	version, err := moduleVersion(context.Background(), testOptions(t, ""), fallbackModule)
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := CACertificates(version)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := pemData; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			t.Errorf("a %s block", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA", c.Subject)
		}
		n++
	}
	if n < 100 {
		t.Errorf("%d roots; Mozilla's list has well over 100", n)
	}
	if !strings.HasPrefix(string(pemData), "# ") || !strings.Contains(string(pemData), "golang.org/x/crypto/x509roots/fallback v") {
		t.Errorf("header does not name the module and its version:\n%.300s", pemData)
	}
}

// TestTarball: the tarball is the OCI layout, byte for byte, plus a
// manifest.json that go-containerregistry's docker-archive reader (as
// docker load) reads as the archive platform's image.
func TestTarball(t *testing.T) {
	r := fakeBuild(t, func(o *Options) { o.ArchivePlatform = "linux/arm64/v8" })
	f, err := os.Open(r.Tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	var names []string
	var manifest []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(commitTime) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %s, ids %d:%d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == "manifest.json":
			manifest = data
		case h.Typeflag == tar.TypeReg:
			onDisk, err := os.ReadFile(filepath.Join(r.Layout, filepath.FromSlash(h.Name)))
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Errorf("%s in the tarball is not the layout's (%v)", h.Name, err)
			}
		}
	}
	for _, want := range []string{"oci-layout", "index.json", "blobs/", "blobs/sha256/", "manifest.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in the tarball: %v", want, names)
		}
	}
	if !slices.IsSorted(names[:len(names)-1]) {
		t.Errorf("entries are not sorted: %v", names)
	}
	var dm tarball.Manifest
	if err := json.Unmarshal(manifest, &dm); err != nil || len(dm) != 1 || !slices.Equal(dm[0].RepoTags, []string{r.Tag.Name()}) {
		t.Fatalf("manifest.json %s (%v): want one image tagged %s", manifest, err, r.Tag.Name())
	}

	loaded, err := tarball.ImageFromPath(r.Tarball, &r.Tag)
	if err != nil {
		t.Fatal(err)
	}
	arm := r.Images[1].Image
	lc, _ := loaded.ConfigName()
	ac, _ := arm.ConfigName()
	if lc != ac {
		t.Errorf("docker-archive config %s, want the arm64 image's %s", lc, ac)
	}
	ll, _ := loaded.Layers()
	al, _ := arm.Layers()
	for i := range al {
		ld, _ := ll[i].DiffID()
		ad, _ := al[i].DiffID()
		if ld != ad {
			t.Errorf("layer %d: diff id %s, want %s", i, ld, ad)
		}
	}

	// The layout as written reads back as the same index, named as
	// containerd's importer and BuildKit name it.
	p, err := layout.FromPath(r.Layout)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	top, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want 1", len(top.Manifests))
	}
	d := top.Manifests[0]
	if d.Digest != digest(t, r.Index) || d.MediaType != types.OCIImageIndex {
		t.Errorf("index.json names %s %s, want the index %s", d.MediaType, d.Digest, digest(t, r.Index))
	}
	if d.Annotations[annotationImageName] != r.Tag.Name() || d.Annotations[annotationRefName] != "0.1.0-test" {
		t.Errorf("index.json annotations %v", d.Annotations)
	}
}

// TestOptions: what Build refuses before compiling anything.
func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"a version with a space would end -X's value", func(o *Options) { o.Version = "1.0 -X main.evil=1" }, "version"},
		{"a revision with a slash", func(o *Options) { o.Revision = "a/b" }, "revision"},
		{"no time: now is not reproducible", func(o *Options) { o.Created = time.Time{} }, "Created"},
		{"an archive platform not built", func(o *Options) { o.ArchivePlatform = "linux/s390x" }, "not one of the platforms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, t.TempDir())
			o.compile = func(context.Context, Options, v1.Platform, string) (map[string][]byte, error) {
				t.Fatal("compiled despite the bad options")
				return nil, nil
			}
			tc.mutate(&o)
			if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one about %q", err, tc.want)
			}
		})
	}
}

// TestReproducible builds the image from this repository twice, into two
// directories, and requires the same digests and the same tarball.
func TestReproducible(t *testing.T) {
	compareBuilds(t, realBuild(t, "first"), realBuild(t, "second"))
}

// TestBinaries: the real build's binaries are static executables for their
// platform, carry the version and revision, and the host's runs.
func TestBinaries(t *testing.T) {
	r := realBuild(t, "first")
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, pi := range r.Images {
		files := imageFiles(t, pi.Image)
		for _, b := range Binaries {
			ef, err := elf.NewFile(bytes.NewReader(files[b].data))
			if err != nil {
				t.Fatalf("%s/%s: %v", platformString(pi.Platform), b, err)
			}
			if ef.Machine != machines[pi.Platform.Architecture] {
				t.Errorf("%s/%s: machine %s", platformString(pi.Platform), b, ef.Machine)
			}
			for _, prog := range ef.Progs {
				if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
					t.Errorf("%s/%s is dynamically linked", platformString(pi.Platform), b)
				}
			}
		}
	}
	host := hostImage(t, r)
	exe := filepath.Join(t.TempDir(), "scepctl")
	if err := os.WriteFile(exe, imageFiles(t, host.Image)["scepctl"].data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(exe, "version").CombinedOutput()
	if want := "scepctl 0.1.0-test (0123456789abcdef0123456789abcdef01234567)\n"; err != nil || string(out) != want {
		t.Errorf("scepctl version: %q, %v; want %q", out, err, want)
	}
}

// TestSBOM: the SBOM lists each binary with its SHA-256 and the modules
// linked into it (from the binary, not go.mod: scepctl has no
// controller-runtime), and the Go standard library.
func TestSBOM(t *testing.T) {
	r := realBuild(t, "first")
	for _, pi := range r.Images {
		var bom cdx.BOM
		if err := cdx.NewBOMDecoder(bytes.NewReader(pi.SBOM), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
			t.Fatal(err)
		}
		if bom.SpecVersion != cdx.SpecVersion1_6 || bom.Metadata.Component.Type != cdx.ComponentTypeContainer || bom.Metadata.Timestamp != "2026-11-25T10:30:00Z" {
			t.Errorf("spec %s, subject %+v, timestamp %s", bom.SpecVersion, bom.Metadata.Component, bom.Metadata.Timestamp)
		}
		files := imageFiles(t, pi.Image)
		components := map[string]cdx.Component{}
		for _, c := range *bom.Components {
			components[c.BOMRef] = c
		}
		for _, b := range Binaries {
			c, ok := components["file:/"+b]
			if !ok {
				t.Fatalf("no component for /%s", b)
			}
			sum := sha256.Sum256(files[b].data)
			if (*c.Hashes)[0].Value != hex.EncodeToString(sum[:]) {
				t.Errorf("/%s: SHA-256 %s is not the file's", b, (*c.Hashes)[0].Value)
			}
			var arch string
			for _, p := range *c.Properties {
				if p.Name == "go:build:GOARCH" {
					arch = p.Value
				}
			}
			if arch != pi.Platform.Architecture {
				t.Errorf("/%s: GOARCH %q in the SBOM", b, arch)
			}
		}
		uses := map[string][]string{}
		for _, d := range *bom.Dependencies {
			if d.Dependencies != nil {
				uses[d.Ref] = *d.Dependencies
			}
		}
		if !slices.Equal(uses["image"], []string{"file:/manager", "file:/scepctl"}) {
			t.Errorf("the image depends on %v", uses["image"])
		}
		hasModule := func(bin, path string) bool {
			return slices.ContainsFunc(uses["file:/"+bin], func(ref string) bool { return strings.HasPrefix(ref, "pkg:golang/"+path+"@") })
		}
		for _, m := range []string{"sigs.k8s.io/controller-runtime", "github.com/cert-manager/issuer-lib", "stdlib"} {
			if !hasModule("manager", m) {
				t.Errorf("manager: no %s in the SBOM", m)
			}
		}
		if hasModule("scepctl", "sigs.k8s.io/controller-runtime") {
			t.Error("scepctl lists controller-runtime: the SBOM is not read from the binary")
		}
		if runtime.GOARCH == pi.Platform.Architecture {
			t.Logf("%s: %d components", platformString(pi.Platform), len(components))
		}
	}
}
