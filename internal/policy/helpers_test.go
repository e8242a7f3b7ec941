package policy

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net/url"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
)

var rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)

// csrOf builds a CSR the way the operator's own code does (scep.NewCSR)
// and parses it as the signer does.
func csrOf(t testing.TB, tmpl scep.CSRTemplate, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := scep.NewCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// webShopTemplate is a request that fits testSpec for testVars: the start
// of TestCheck's cases and of FuzzCheck's seeds.
func webShopTemplate() scep.CSRTemplate {
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	return scep.CSRTemplate{
		Subject:        pkix.Name{CommonName: "web.shop", Organization: []string{"Corp"}},
		DNSNames:       []string{"web.shop.svc.cluster.local", "Shop.Apps.Corp.Example"},
		URIs:           []*url.URL{spiffe},
		UPNs:           []string{"web.shop@corp.example"},
		EmailAddresses: []string{"web@Shop.corp.example"},
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
}

// rawAttribute is a PKCS#10 attribute as a test writes it.
type rawAttribute struct {
	Type   asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

var (
	oidChallengePassword = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 7}
	oidMSNameValuePair   = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 13, 2, 1}
	oidMSCertExtensions  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 1, 14}
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func rawValue(t testing.TB, v any) asn1.RawValue {
	return asn1.RawValue{FullBytes: mustMarshal(t, v)}
}

// extensionRequest is the PKCS#9 attribute with exts as its one value.
func extensionRequest(t testing.TB, exts ...pkix.Extension) rawAttribute {
	if exts == nil {
		exts = []pkix.Extension{}
	}
	return rawAttribute{Type: oidExtensionRequest, Values: []asn1.RawValue{rawValue(t, exts)}}
}

// rawTBS encodes a certificationRequestInfo for rsaKey with subject and
// attrs exactly as given, for what crypto/x509 cannot be asked to write.
func rawTBS(t testing.TB, subject pkix.RDNSequence, attrs ...rawAttribute) []byte {
	spki, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	raws := []asn1.RawValue{}
	for _, a := range attrs {
		raws = append(raws, rawValue(t, a))
	}
	return mustMarshal(t, struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes []asn1.RawValue `asn1:"tag:0"`
	}{0, rawValue(t, subject), asn1.RawValue{FullBytes: spki}, raws})
}

// rawCSR signs rawTBS's request with rsaKey and parses it with crypto/x509,
// as the signer does before Check.
func rawCSR(t testing.TB, subject pkix.RDNSequence, attrs ...rawAttribute) *x509.CertificateRequest {
	t.Helper()
	tbs := rawTBS(t, subject, attrs...)
	digest := sha256.Sum256(tbs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	der := mustMarshal(t, struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return csr
}

// sanExtension encodes a subjectAltName of raw GeneralNames.
func sanExtension(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	return pkix.Extension{Id: oidExtSubjectAltName, Value: mustMarshal(t, names)}
}

// otherNameSAN is an otherName GeneralName of type oid holding a UTF8String.
func otherNameSAN(t testing.TB, oid asn1.ObjectIdentifier, value string) asn1.RawValue {
	inner, err := asn1.MarshalWithParams(value, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	seq := mustMarshal(t, struct {
		TypeID asn1.ObjectIdentifier
		Value  asn1.RawValue
	}{oid, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
	var s asn1.RawValue
	if _, err := asn1.Unmarshal(seq, &s); err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: s.Bytes}
}

// ekuExtension encodes an extendedKeyUsage of oids.
func ekuExtension(t testing.TB, oids ...asn1.ObjectIdentifier) pkix.Extension {
	return pkix.Extension{Id: oidExtExtendedKeyUsage, Value: mustMarshal(t, oids)}
}
