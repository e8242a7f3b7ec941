package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations naming the image in an OCI layout's index.json: containerd's
// importer (ctr, kind) and docker load read the full name from the first;
// the OCI spec's ref.name holds the tag alone, as BuildKit writes it.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// writeLayout writes idx as an OCI image layout in dir, replacing
// whatever dir held (layout.Write would otherwise add to an old index.json).
func writeLayout(dir string, idx v1.ImageIndex, tag name.Tag) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		annotationImageName: tag.Name(),
		annotationRefName:   tag.TagStr(),
	}))
}

// writeArchive writes the tarball that `docker load`, `ctr images import`
// and `kind load image-archive` read: the OCI layout in dir as it is
// (oci-layout, index.json, blobs/sha256/...; containerd imports the whole
// index from it), plus a docker-archive manifest.json naming img (one
// platform: the format has no index) by paths into the same blobs, so
// nothing is stored twice. BuildKit's docker exporter writes the same
// shape. Entries are sorted and carry fixed times and ids.
func writeArchive(path, dir string, img v1.Image, tag name.Tag, created time.Time) error {
	manifest, err := dockerManifest(img, tag)
	if err != nil {
		return err
	}
	var names []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			rel += "/"
		}
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)

	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	write := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(data))}
		if data == nil {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, n := range names {
		var data []byte
		if n[len(n)-1] != '/' {
			if data, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(n))); err != nil {
				return err
			}
		}
		if err := write(n, data); err != nil {
			return err
		}
	}
	if err := write("manifest.json", manifest); err != nil {
		return err
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// dockerManifest is the docker-archive manifest.json for img, with paths
// into the OCI layout's blobs. Docker decompresses the gzipped layers
// itself and checks them against the config's diff ids.
func dockerManifest(img v1.Image, tag name.Tag) ([]byte, error) {
	if img == nil {
		return nil, errors.New("no image for the tarball's manifest.json")
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	d := tarball.Descriptor{Config: blobPath(cfg), RepoTags: []string{tag.Name()}}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return nil, err
		}
		d.Layers = append(d.Layers, blobPath(h))
	}
	b, err := json.Marshal(tarball.Manifest{d})
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	return b, nil
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
