package install

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/scep-operator/scep-operator/internal/imagebuild"
)

// Image names the operator's image as the tests and the demo build it:
// a repository no registry serves, so that only the imported image can run
// (imagePullPolicy Never).
const (
	ImageRepository = "localhost/scep-operator/scep-operator"
	ImageTag        = "e2e"
)

// BuildImage builds the operator's image with `make image`'s code
// (internal/imagebuild), for this machine's architecture only, into dir,
// and returns the tarball containerd imports.
func BuildImage(ctx context.Context, root, dir string, log io.Writer) (string, error) {
	platform, err := imagebuild.ParsePlatform("linux/" + runtime.GOARCH)
	if err != nil {
		return "", err
	}
	res, err := imagebuild.Build(ctx, imagebuild.Options{
		Root:       root,
		Out:        dir,
		Repository: ImageRepository,
		Version:    ImageTag,
		Revision:   "e2e",
		// A fixed time: a second build in one test run reuses Go's cache.
		Created:   time.Unix(0, 0),
		Platforms: []v1.Platform{platform},
		Log:       log,
	})
	if err != nil {
		return "", fmt.Errorf("building the operator's image: %w", err)
	}
	return res.Tarball, nil
}
