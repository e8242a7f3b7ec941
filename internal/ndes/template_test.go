package ndes

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"strings"
	"testing"
)

func TestTemplateExtension(t *testing.T) {
	e, err := TemplateExtension("WebServer-K8s")
	if err != nil {
		t.Fatal(err)
	}
	// What certreq writes for CertificateTemplate=WebServer-K8s in a V1
	// request: BMPString 1E 1A then UTF-16BE.
	want := []byte{0x1e, 0x1a, 0, 'W', 0, 'e', 0, 'b', 0, 'S', 0, 'e', 0, 'r', 0, 'v', 0, 'e', 0, 'r', 0, '-', 0, 'K', 0, '8', 0, 's'}
	if !e.Id.Equal(OIDEnrollCertType) || e.Critical || !bytes.Equal(e.Value, want) {
		t.Fatalf("extension %v %x", e.Id, e.Value)
	}
	if name, ok := TemplateName(e); !ok || name != "WebServer-K8s" {
		t.Fatalf("read back %q %v", name, ok)
	}
	if _, err := TemplateExtension(strings.Repeat("x", 65)); err == nil {
		t.Fatal("a 65-character name was accepted")
	}
	if _, ok := TemplateName(pkix.Extension{Id: OIDCertificateTemplate, Value: []byte{0x30, 0}}); ok {
		t.Fatal("read a name out of szOID_CERTIFICATE_TEMPLATE")
	}
	if !IsTemplateExtension(asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 7}) || IsTemplateExtension(asn1.ObjectIdentifier{2, 5, 29, 17}) {
		t.Fatal("IsTemplateExtension")
	}
}
