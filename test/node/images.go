package node

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is a container image made from one of this module's Go main
// packages: a single static binary in an otherwise empty file system.
// Nothing is pulled; the node imports it into containerd.
type Image struct {
	// Ref is the image reference pods name, with imagePullPolicy Never.
	Ref string
	// Package is the main package, relative to the repository root.
	Package string
}

var (
	// PauseImage is the pod sandbox image (containerd's sandbox_image).
	PauseImage = Image{Ref: "localhost/scep-operator/pause:e2e", Package: "./test/node/images/pause"}
	// CertwatchImage reports what a mounted Secret holds and serves TLS
	// with it (see test/node/images/certwatch).
	CertwatchImage = Image{Ref: "localhost/scep-operator/certwatch:e2e", Package: "./test/node/images/certwatch"}
)

// binaryName is the file name of the image's only binary (its entrypoint).
func (img Image) binaryName() string { return filepath.Base(img.Package) }

// BuildImage compiles img's package (static, for this machine's
// architecture) and writes it as an image tarball to out, ready for
// `ctr images import`.
func BuildImage(ctx context.Context, root string, img Image, out string) error {
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", img.Ref, err)
	}
	bin := out + ".bin"
	defer func() { _ = os.Remove(bin) }()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, img.Package)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v: %s", img.Package, err, b)
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: img.binaryName(), Mode: 0o755, Size: int64(len(exe)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(exe); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		return err
	}
	image, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Entrypoint = []string{"/" + img.binaryName()}
	if image, err = mutate.ConfigFile(image, cfg); err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, image)
}
