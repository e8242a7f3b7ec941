package imagebuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BuildFlags are the go build flags of the binaries, after `go build` and
// before the packages; the Dockerfile uses the same (dockerfile_test.go).
// -trimpath and -buildvcs=false keep the checkout's path and state out of
// the binaries: the version and revision come from the linker instead.
func BuildFlags(version, revision string) []string {
	return []string{"-trimpath", "-buildvcs=false", "-ldflags", LDFlags(version, revision)}
}

// LDFlags strips the symbol table and DWARF (debug/buildinfo, which the SBOM
// reads, stays) and sets internal/version.
func LDFlags(version, revision string) string {
	return "-s -w -X " + versionPackage + ".version=" + version + " -X " + versionPackage + ".revision=" + revision
}

// buildEnv is the environment that decides what the compiler emits. It
// replaces the caller's values: a GOAMD64=v3 or GOFLAGS=-race in a
// developer's shell must not change the image.
func buildEnv(p v1.Platform) map[string]string {
	env := map[string]string{
		"CGO_ENABLED":  "0",
		"GOOS":         p.OS,
		"GOARCH":       p.Architecture,
		"GOFLAGS":      "",
		"GOWORK":       "off",
		"GOEXPERIMENT": "",
		"GOAMD64":      "v1",
		"GOARM64":      "v8.0",
	}
	return env
}

func has(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// fallbackModule holds the CA bundle's roots (CACertificates).
const fallbackModule = "golang.org/x/crypto/x509roots/fallback"

// moduleVersion is the version of a module in the repository's build list,
// which is what this program was compiled with (test binaries carry no
// module list for runtime/debug to read).
func moduleVersion(ctx context.Context, o Options, module string) (string, error) {
	cmd := exec.CommandContext(ctx, o.Go, "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Compile builds Binaries for p into dir (static: CGO_ENABLED=0) and
// returns their contents by name.
func Compile(ctx context.Context, o Options, p v1.Platform, dir string) (map[string][]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := append([]string{"build"}, BuildFlags(o.Version, o.Revision)...)
	args = append(args, "-o", dir+string(filepath.Separator))
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, o.Go, args...)
	cmd.Dir = o.Root
	set := buildEnv(p)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !has(set, k) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range set {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s for %s: %w\n%s", strings.Join(args, " "), platformString(p), err, out)
	}
	bins := make(map[string][]byte, len(Binaries))
	for _, b := range Binaries {
		data, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			return nil, err
		}
		bins[b] = data
	}
	return bins, nil
}
