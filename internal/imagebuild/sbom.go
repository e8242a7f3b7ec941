package imagebuild

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// SBOMSpecVersion is the CycloneDX version written: 1.6 rather than the
// library's newest, since it is what scanners read today.
const SBOMSpecVersion = cdx.SpecVersion1_6

// SBOM is the CycloneDX JSON SBOM of one platform's image: the image, its
// binaries (with their SHA-256 and Go build settings) and the Go modules
// linked into each, as debug/buildinfo reads them from the binaries
// themselves, so it lists exactly what was compiled in (not go.mod's
// whole graph). It has no serial number and its one timestamp is
// o.Created, so the same binaries give the same bytes.
func SBOM(o Options, p v1.Platform, bins map[string][]byte) ([]byte, error) {
	imageRef := "image"
	image := cdx.Component{
		BOMRef:  imageRef,
		Type:    cdx.ComponentTypeContainer,
		Name:    o.Repository,
		Version: o.Version,
		ExternalReferences: &[]cdx.ExternalReference{
			{Type: cdx.ERTypeVCS, URL: o.Source},
		},
		Properties: &[]cdx.Property{
			{Name: "platform", Value: platformString(p)},
			{Name: "org.opencontainers.image.revision", Value: o.Revision},
		},
	}
	modules := map[string]cdx.Component{}
	var components []cdx.Component
	deps := []cdx.Dependency{}
	var binRefs []string
	for _, name := range Binaries {
		data, ok := bins[name]
		if !ok {
			return nil, fmt.Errorf("no binary %s", name)
		}
		bi, err := buildinfo.Read(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading the Go build information of %s: %w", name, err)
		}
		sum := sha256.Sum256(data)
		props := []cdx.Property{
			{Name: "path", Value: "/" + name},
			{Name: "go:package", Value: bi.Path},
			{Name: "go:version", Value: bi.GoVersion},
		}
		for _, s := range bi.Settings {
			props = append(props, cdx.Property{Name: "go:build:" + s.Key, Value: s.Value})
		}
		ref := "file:/" + name
		binRefs = append(binRefs, ref)
		components = append(components, cdx.Component{
			BOMRef:     ref,
			Type:       cdx.ComponentTypeApplication,
			Name:       name,
			Version:    o.Version,
			Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hex.EncodeToString(sum[:])}},
			Properties: &props,
		})
		std := goModule("stdlib", strings.TrimPrefix(bi.GoVersion, "go"), "")
		modules[std.BOMRef] = std
		uses := []string{std.BOMRef}
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			c := goModule(m.Path, m.Version, m.Sum)
			modules[c.BOMRef] = c
			uses = append(uses, c.BOMRef)
		}
		sort.Strings(uses)
		deps = append(deps, cdx.Dependency{Ref: ref, Dependencies: &uses})
	}
	refs := make([]string, 0, len(modules))
	for ref := range modules {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		components = append(components, modules[ref])
		deps = append(deps, cdx.Dependency{Ref: ref})
	}
	deps = append([]cdx.Dependency{{Ref: imageRef, Dependencies: &binRefs}}, deps...)

	bom := cdx.NewBOM()
	bom.Metadata = &cdx.Metadata{
		Timestamp: o.Created.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: "scep-operator hack/image", Version: o.Version,
			Description: "reads debug/buildinfo of the image's binaries (github.com/CycloneDX/cyclonedx-go)",
		}}},
		Component: &image,
	}
	bom.Components = &components
	bom.Dependencies = &deps
	var out bytes.Buffer
	enc := cdx.NewBOMEncoder(&out, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, SBOMSpecVersion); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// goModule is a Go module as a CycloneDX library, named by its package URL
// (pkg:golang/PATH@VERSION, as govulncheck, syft and trivy name them). sum
// is go.sum's h1: hash (a SHA-256 over the module's file hashes, not over
// a file, so it is a property rather than a CycloneDX hash).
func goModule(path, version, sum string) cdx.Component {
	purl := "pkg:golang/" + path
	if version != "" {
		purl += "@" + strings.ReplaceAll(version, "+", "%2B")
	}
	c := cdx.Component{BOMRef: purl, Type: cdx.ComponentTypeLibrary, Name: path, Version: version, PackageURL: purl}
	if sum != "" {
		c.Properties = &[]cdx.Property{{Name: "go:sum", Value: sum}}
	}
	return c
}
