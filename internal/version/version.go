// Package version holds the release and commit the binaries were built from.
// The image builder (hack/image) and the Dockerfile set them with the linker:
//
//	-X github.com/scep-operator/scep-operator/internal/version.version=0.1.0
//	-X github.com/scep-operator/scep-operator/internal/version.revision=<commit>
//
// A plain `go build` leaves them at "dev" and "unknown".
package version

// Set by the linker (-X); variables because -X can only set those.
var (
	version  = "dev"
	revision = "unknown"
)

// Version is the release the binary was built as, e.g. "0.1.0".
func Version() string { return version }

// Revision is the git commit the binary was built from.
func Revision() string { return revision }

// String is "VERSION (REVISION)", as the binaries print it.
func String() string { return version + " (" + revision + ")" }
