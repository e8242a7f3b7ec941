// Command image builds scep-operator's container image without a container
// engine (`make image`): an OCI image index for linux/amd64 and linux/arm64,
// written as an OCI layout (dist/image/oci), as a tarball that docker load,
// ctr images import and kind load image-archive read
// (dist/image/scep-operator.tar), and with a CycloneDX SBOM per platform
// beside it and inside it. See internal/imagebuild.
//
//	go run ./hack/image [-out dist/image] [-version V] [-revision R] [-created RFC3339]
//	                    [-platforms linux/amd64,linux/arm64] [-archive-platform linux/amd64]
//	                    [-repository ghcr.io/scep-operator/scep-operator]
//	go run ./hack/image build-args [the flags above]
//	go run ./hack/image sbom -version V -revision R -created RFC3339 -platform linux/amd64 -o FILE DIR
//
// Without flags, the version is the chart's appVersion, the revision the
// checked-out commit, and the time the commit's (SOURCE_DATE_EPOCH, when
// set, wins), so two builds of one commit give the same digests. build-args
// prints them as the Dockerfile's --build-arg flags (make docker-build);
// sbom writes the SBOM of the binaries in DIR (the Dockerfile's builder).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/scep-operator/scep-operator/internal/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "sbom" {
		return runSBOM(args[1:])
	}
	buildArgs := len(args) > 0 && args[0] == "build-args"
	if buildArgs {
		args = args[1:]
	}
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	o := imagebuild.Options{Log: os.Stdout}
	var platforms, created string
	fs.StringVar(&o.Out, "out", "dist/image", "directory to write the OCI layout, the tarball and the SBOMs to")
	fs.StringVar(&o.Repository, "repository", imagebuild.DefaultRepository, "image name without the tag")
	fs.StringVar(&o.Version, "version", "", "version: tag, label and the binaries' version (default: the chart's appVersion)")
	fs.StringVar(&o.Revision, "revision", "", "git commit (default: HEAD)")
	fs.StringVar(&created, "created", "", "creation time, RFC 3339 (default: $SOURCE_DATE_EPOCH, else the commit's time)")
	fs.StringVar(&o.Source, "source", imagebuild.DefaultSource, "repository URL (org.opencontainers.image.source)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "platforms of the image index")
	fs.StringVar(&o.ArchivePlatform, "archive-platform", "", "platform the tarball's manifest.json (docker load) names (default: this machine's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	o.Root = root
	for _, s := range strings.Split(platforms, ",") {
		p, err := imagebuild.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		o.Platforms = append(o.Platforms, p)
	}
	if err := defaults(root, &o, created); err != nil {
		return err
	}
	if buildArgs {
		// The Dockerfile's ARGs, for docker build.
		fmt.Printf("--build-arg VERSION=%s --build-arg REVISION=%s --build-arg CREATED=%s\n", o.Version, o.Revision, o.Created.UTC().Format(time.RFC3339))
		return nil
	}
	start := time.Now()
	res, err := imagebuild.Build(ctx, o)
	if err != nil {
		return err
	}
	idx, err := res.Index.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s (%s, created %s)\n", res.Tag.Name(), idx, o.Revision, o.Created.UTC().Format(time.RFC3339))
	for _, pi := range res.Images {
		d, err := pi.Image.Digest()
		if err != nil {
			return err
		}
		size, err := compressedSize(pi.Image)
		if err != nil {
			return err
		}
		fmt.Printf("  %-14s %s  %.1f MiB compressed  SBOM %s\n", pi.Platform.OS+"/"+pi.Platform.Architecture, d, float64(size)/(1<<20), pi.SBOMFile)
	}
	fmt.Printf("OCI layout %s\ntarball    %s (manifest.json: %s)\nbuilt in %s\n", res.Layout, res.Tarball, res.ArchivePlatform, time.Since(start).Round(time.Second))
	return nil
}

// compressedSize is what a pull of the image transfers: its layers, config
// and manifest.
func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// defaults fills what the flags left empty from the checkout: the chart's
// appVersion, HEAD, and the commit's time.
func defaults(root string, o *imagebuild.Options, created string) error {
	if o.Version == "" {
		v, err := chartAppVersion(root)
		if err != nil {
			return err
		}
		o.Version = v
	}
	if o.Revision == "" {
		rev, err := git(root, "rev-parse", "HEAD")
		if err != nil {
			return err
		}
		o.Revision = rev
		if st, err := git(root, "status", "--porcelain", "--untracked-files=no"); err == nil && st != "" {
			fmt.Fprintf(os.Stderr, "image: warning: the work tree has changes that are not in %s; the image holds them, its revision label does not say so\n", rev)
		}
	}
	switch {
	case created != "":
		t, err := time.Parse(time.RFC3339, created)
		if err != nil {
			return fmt.Errorf("-created: %w", err)
		}
		o.Created = t
	case os.Getenv("SOURCE_DATE_EPOCH") != "":
		sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		o.Created = time.Unix(sec, 0)
	default:
		ct, err := git(root, "show", "-s", "--format=%ct", o.Revision)
		if err != nil {
			return err
		}
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return fmt.Errorf("commit time %q: %w", ct, err)
		}
		o.Created = time.Unix(sec, 0)
	}
	return nil
}

var appVersionLine = regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?\s*$`)

// chartAppVersion is the image tag the chart deploys by default, so that
// `make image` and `helm install` agree without flags.
func chartAppVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "charts", "scep-operator", "Chart.yaml"))
	if err != nil {
		return "", err
	}
	m := appVersionLine.FindSubmatch(b)
	if m == nil {
		return "", errors.New("charts/scep-operator/Chart.yaml has no appVersion")
	}
	return string(m[1]), nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot is the directory holding go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above: run from the repository")
		}
		dir = parent
	}
}

// runSBOM writes the SBOM of the binaries in a directory, as the Dockerfile's
// builder stage has them.
func runSBOM(args []string) error {
	fs := flag.NewFlagSet("image sbom", flag.ContinueOnError)
	o := imagebuild.Options{}
	var created, platform, out string
	fs.StringVar(&o.Repository, "repository", imagebuild.DefaultRepository, "image name without the tag")
	fs.StringVar(&o.Version, "version", "", "version")
	fs.StringVar(&o.Revision, "revision", "", "git commit")
	fs.StringVar(&created, "created", "", "creation time, RFC 3339")
	fs.StringVar(&o.Source, "source", imagebuild.DefaultSource, "repository URL")
	fs.StringVar(&platform, "platform", "linux/amd64", "the binaries' platform")
	fs.StringVar(&out, "o", "sbom.cdx.json", "file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("sbom: want one directory holding " + strings.Join(imagebuild.Binaries, " and "))
	}
	p, err := imagebuild.ParsePlatform(platform)
	if err != nil {
		return err
	}
	if o.Created, err = time.Parse(time.RFC3339, created); err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	bins := map[string][]byte{}
	for _, b := range imagebuild.Binaries {
		if bins[b], err = os.ReadFile(filepath.Join(fs.Arg(0), b)); err != nil {
			return err
		}
	}
	sbom, err := imagebuild.SBOM(o, p, bins)
	if err != nil {
		return err
	}
	return os.WriteFile(out, sbom, 0o644)
}
