package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// entry is a file or directory in a layer.
type entry struct {
	// name is the path without the leading slash; a directory's ends in /.
	name     string
	mode     int64
	uid, gid int
	data     []byte
}

func (e entry) dir() bool { return strings.HasSuffix(e.name, "/") }

// nonroot is distroless's unprivileged user.
const nonroot = 65532

// passwd and group are distroless/static's, so that a tool or a log that
// resolves uid 65532 finds "nonroot".
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nobody:x:65534:\n" +
		"tty:x:5:\n" +
		"staff:x:50:\n" +
		"nonroot:x:65532:\n"
	// nsswitch keeps Go's resolver on files then DNS, as distroless's.
	nsswitch = "hosts: files dns\n"
)

// baseLayer holds what distroless/static:nonroot gives the Dockerfile's
// image and the binaries use: users, groups, the CA bundle, a home for
// nonroot and a /tmp. It is the same for every platform (one blob).
func baseLayer(created time.Time, level int, fallbackVersion string) (v1.Layer, error) {
	cas, err := CACertificates(fallbackVersion)
	if err != nil {
		return nil, err
	}
	return layer(created, level, []entry{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte(nsswitch)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: strings.TrimPrefix(CACertificatesPath, "/"), mode: 0o644, data: cas},
		{name: "home/", mode: 0o755},
		{name: "home/nonroot/", mode: 0o700, uid: nonroot, gid: nonroot},
		{name: "root/", mode: 0o700},
		{name: "tmp/", mode: 0o1777},
	})
}

// appLayer holds the binaries (/NAME) and the SBOM.
func appLayer(created time.Time, level int, bins map[string][]byte, sbom []byte) (v1.Layer, error) {
	var es []entry
	for _, b := range Binaries {
		es = append(es, entry{name: b, mode: 0o755, data: bins[b]})
	}
	sbomName := strings.TrimPrefix(SBOMPath, "/")
	for d := path.Dir(sbomName); d != "."; d = path.Dir(d) {
		es = append(es, entry{name: d + "/", mode: 0o755})
	}
	es = append(es, entry{name: sbomName, mode: 0o644, data: sbom})
	return layer(created, level, es)
}

// layer writes es as an OCI layer gzipped at level. Entries are sorted by name, all
// carry the time created, numeric ids and no user or group names, so the
// bytes depend on nothing but es.
func layer(created time.Time, level int, es []entry) (v1.Layer, error) {
	es = append([]entry(nil), es...)
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, e := range es {
		if i > 0 && es[i-1].name == e.name {
			return nil, fmt.Errorf("%s twice in one layer", e.name)
		}
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.dir() {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	// Compressed here, once, at level (what a pull transfers);
	// go-containerregistry takes gzipped bytes as they are. Go's gzip
	// header has no time or name, so the bytes depend on the tar alone.
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// CACertificates is the PEM bundle at CACertificatesPath: the roots of
// golang.org/x/crypto/x509roots/fallback (Mozilla's NSS list, as Debian's
// ca-certificates and so distroless carry it). The module is pinned in
// go.sum, so every machine builds the same bundle, whatever its own
// ca-certificates package holds. Roots that NSS trusts only with a
// constraint (a distrust-after date) are left out: a PEM file cannot carry
// the constraint, and trusting them without it would trust more than NSS.
// version is the module's version, for the bundle's header.
func CACertificates(version string) ([]byte, error) {
	var certs, constrained int
	var body bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			constrained++
			continue
		}
		cert, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			return nil, fmt.Errorf("a root of x509roots/fallback does not parse: %w", err)
		}
		sum := sha256.Sum256(root.Certificate)
		fmt.Fprintf(&body, "\n# %s\n# SHA-256 %s\n", cert.Subject, hex.EncodeToString(sum[:]))
		if err := pem.Encode(&body, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, err
		}
		certs++
	}
	if certs == 0 {
		return nil, fmt.Errorf("x509roots/fallback holds no roots")
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# %d trusted roots from golang.org/x/crypto/x509roots/fallback %s (Mozilla NSS);\n", certs, version)
	fmt.Fprintf(&out, "# %d roots trusted only with a distrust-after constraint are left out.\n", constrained)
	out.Write(body.Bytes())
	return out.Bytes(), nil
}
