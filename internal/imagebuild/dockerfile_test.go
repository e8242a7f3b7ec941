package imagebuild

import (
	"encoding/json"
	"os"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// distroless is the Dockerfile's base, and what it gives the image that
// make image writes itself in the base layer (baseLayer): the same paths,
// and the same environment. A file added to the base layer must be one
// distroless has, or the Dockerfile must COPY it.
const distroless = "gcr.io/distroless/static:nonroot"

var distrolessFiles = []string{
	"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
	"home/", "home/nonroot/", "root/", "tmp/",
}

var distrolessEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
}

// instruction is one Dockerfile line, continuations joined.
type instruction struct {
	cmd  string // upper case: FROM, COPY, ...
	args string
}

// stage is the instructions after one FROM.
type stage struct {
	from, name string
	body       []instruction
}

// parseDockerfile reads what these tests need of a Dockerfile: stages and
// their instructions, with comments dropped and continued lines joined.
func parseDockerfile(t *testing.T, text string) []stage {
	t.Helper()
	var stages []stage
	var line string
	for _, raw := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && line == "") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			line += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		line += trimmed
		cmd, args, _ := strings.Cut(line, " ")
		line = ""
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("%s before FROM", in.cmd)
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	return stages
}

// words splits a shell-like line into words, honoring double quotes.
func words(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, inWord = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// TestDockerfile: the Dockerfile describes the image make image builds:
// its base gives the base layer's files and environment, its COPY lines
// the other layer's files, its build the same flags for the same binaries,
// and the same user, entrypoint, working directory and labels.
func TestDockerfile(t *testing.T) {
	text, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(text))
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and the image", len(stages))
	}
	final, builder := stages[len(stages)-1], stages[len(stages)-2]
	if final.from != distroless {
		t.Fatalf("the image is FROM %s; the checks below know what %s gives", final.from, distroless)
	}

	r := fakeBuild(t, nil)
	o := testOptions(t, "")
	args := map[string]string{"VERSION": o.Version, "REVISION": o.Revision, "CREATED": o.Created.UTC().Format(time.RFC3339), "TARGETOS": "linux", "TARGETARCH": "amd64"}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			v, ok := args[k]
			if !ok {
				t.Errorf("${%s} is not an ARG the test knows", k)
			}
			return v
		})
	}

	img := r.Images[0].Image
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var baseFiles, appFiles []string
	for n := range layerFiles(t, layers[0]) {
		baseFiles = append(baseFiles, n)
	}
	for n, f := range layerFiles(t, layers[1]) {
		if !f.hdr.FileInfo().IsDir() {
			appFiles = append(appFiles, "/"+n)
		}
	}
	slices.Sort(baseFiles)
	slices.Sort(appFiles)
	if !slices.Equal(baseFiles, distrolessFiles) {
		t.Errorf("the base layer holds %v; %s has %v", baseFiles, distroless, distrolessFiles)
	}

	env := append([]string(nil), distrolessEnv...)
	labels := map[string]string{}
	var copied []string
	var user, workdir string
	var entrypoint []string
	for _, in := range final.body {
		switch in.cmd {
		case "ARG":
		case "ENV":
			k, v, _ := strings.Cut(in.args, "=")
			env = append(env, k+"="+expand(strings.Trim(v, `"`)))
		case "LABEL":
			for _, kv := range words(in.args) {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = expand(v)
			}
		case "COPY":
			w := slices.DeleteFunc(words(in.args), func(s string) bool { return strings.HasPrefix(s, "--") })
			dst := w[len(w)-1]
			for _, src := range w[:len(w)-1] {
				if strings.HasSuffix(dst, "/") {
					copied = append(copied, dst+path.Base(src))
				} else {
					copied = append(copied, dst)
				}
			}
		case "USER":
			user = in.args
		case "WORKDIR":
			workdir = in.args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Errorf("ENTRYPOINT %s: use the exec (JSON) form: %v", in.args, err)
			}
		default:
			t.Errorf("%s in the image stage: teach this test what it changes", in.cmd)
		}
	}
	slices.Sort(copied)
	if !slices.Equal(copied, appFiles) {
		t.Errorf("the Dockerfile copies %v; make image adds %v", copied, appFiles)
	}
	if user != cf.Config.User {
		t.Errorf("USER %s; the image's is %s", user, cf.Config.User)
	}
	if workdir != cf.Config.WorkingDir {
		t.Errorf("WORKDIR %s; the image's is %s", workdir, cf.Config.WorkingDir)
	}
	if !slices.Equal(entrypoint, cf.Config.Entrypoint) {
		t.Errorf("ENTRYPOINT %v; the image's is %v", entrypoint, cf.Config.Entrypoint)
	}
	if !slices.Equal(env, cf.Config.Env) {
		t.Errorf("environment %v; the image's is %v", env, cf.Config.Env)
	}
	if !reflect.DeepEqual(labels, cf.Config.Labels) {
		t.Errorf("labels\n%v\nthe image's\n%v", labels, cf.Config.Labels)
	}

	// The builder compiles the same packages with the same flags, and
	// writes the SBOM with hack/image.
	var build, sbom []string
	for _, in := range builder.body {
		if in.cmd != "RUN" {
			continue
		}
		w := words(expand(in.args))
		if i := slices.Index(w, "build"); i > 0 && w[i-1] == "go" {
			if !slices.Contains(w[:i], "CGO_ENABLED=0") {
				t.Errorf("go build without CGO_ENABLED=0: %v", w)
			}
			build = w[i+1:]
		}
		if i := slices.Index(w, "./hack/image"); i > 0 && len(w) > i+1 && w[i+1] == "sbom" {
			sbom = w[i+2:]
		}
	}
	if build == nil {
		t.Fatal("no go build in the builder stage")
	}
	out := slices.Index(build, "-o")
	if out < 0 || out+1 >= len(build) {
		t.Fatalf("go build %v: no -o DIR", build)
	}
	if want := BuildFlags(args["VERSION"], args["REVISION"]); !slices.Equal(build[:out], want) {
		t.Errorf("go build flags\n%q\nmake image's\n%q", build[:out], want)
	}
	var pkgs []string
	for _, b := range Binaries {
		pkgs = append(pkgs, "./cmd/"+b)
	}
	if !slices.Equal(build[out+2:], pkgs) {
		t.Errorf("go build %v; make image builds %v", build[out+2:], pkgs)
	}
	if sbom == nil {
		t.Error("the builder does not write the SBOM with go run ./hack/image sbom")
	}
}
