package scep

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
)

func TestParseCapabilities(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		post       bool
		renewal    bool
		algorithms Algorithms
	}{
		{"empty body means minimal", "", false, false, Algorithms{CipherDES3CBC, crypto.SHA1}},
		{"MicroMDM 2.3", "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation", true, true, Algorithms{CipherAES256CBC, crypto.SHA256}},
		{"CRLF and case", "postpkioperation\r\nsha-512\r\ndes3\r\n", true, false, Algorithms{CipherDES3CBC, crypto.SHA512}},
		{"SCEPStandard implies AES, SHA-256, POST", "SCEPStandard", true, false, Algorithms{CipherAES256CBC, crypto.SHA256}},
		{"nothing useful means DES and SHA-1", "GetNextCACert", false, false, Algorithms{CipherDES, crypto.SHA1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ParseCapabilities([]byte(tt.body))
			if c.POST() != tt.post || c.Renewal() != tt.renewal {
				t.Errorf("POST=%v Renewal=%v, want %v %v", c.POST(), c.Renewal(), tt.post, tt.renewal)
			}
			if got := c.Algorithms(); got != tt.algorithms {
				t.Errorf("Algorithms = %v, want %v", got, tt.algorithms)
			}
		})
	}
	if got := ParseCapabilities([]byte("b\na\nA")).Strings(); !reflect.DeepEqual(got, []string{"A", "b"}) {
		t.Errorf("Strings = %v", got)
	}
	// The capabilities go into a profile's status: only keyword-shaped
	// words are kept, and at most 32, whatever the server sent.
	hostile := "<html>\nAES\ntoken=SECRET\n" + strings.Repeat("x", 40) + "\nPOSTPKIOperation\u202e\n" + strings.Repeat("W ", 100)
	got := ParseCapabilities([]byte(hostile)).Strings()
	if len(got) > 32 || !slices.Contains(got, "AES") || slices.ContainsFunc(got, func(s string) bool { return strings.ContainsAny(s, "<=\u202e") || len(s) > 32 }) {
		t.Errorf("Strings of a hostile answer = %q", got)
	}
}

func TestParseFingerprint(t *testing.T) {
	cert := testCert(t, testKey(t, 0), "CA", true, x509.KeyUsageCertSign, nil, nil)
	sha256 := FingerprintOf(cert, crypto.SHA256)
	sha1 := FingerprintOf(cert, crypto.SHA1)
	md5 := FingerprintOf(cert, crypto.MD5)
	plain := func(f Fingerprint) string { return strings.ReplaceAll(f.Hex(), ":", "") }
	ndes := func(f Fingerprint) string { // NDES prints groups of eight, lower case
		s := strings.ToLower(plain(f))
		var groups []string
		for i := 0; i < len(s); i += 8 {
			groups = append(groups, s[i:i+8])
		}
		return strings.Join(groups, " ")
	}
	ok := []struct {
		in   string
		want crypto.Hash
	}{
		{sha256.Hex(), crypto.SHA256},
		{plain(sha256), crypto.SHA256},
		{"sha256:" + plain(sha256), crypto.SHA256},
		{"SHA-256:" + sha256.Hex(), crypto.SHA256},
		{ndes(sha1), crypto.SHA1},
		{"  " + strings.ToLower(sha1.Hex()) + "\n", crypto.SHA1},
		{plain(md5), crypto.MD5},
		{"md5:" + md5.Hex(), crypto.MD5},
	}
	for _, tt := range ok {
		fp, err := ParseFingerprint(tt.in)
		if err != nil {
			t.Errorf("ParseFingerprint(%q): %v", tt.in, err)
			continue
		}
		if fp.Hash != tt.want || !fp.Matches(cert) {
			t.Errorf("ParseFingerprint(%q) = %v, does not match the certificate", tt.in, fp)
		}
	}
	bad := map[string]string{
		"":                        "hex digits",
		"xyz":                     "not hexadecimal",
		"abcd":                    "hex digits",
		"sha1:" + plain(sha256):   "labelled",
		"md5:" + plain(sha1) + "": "labelled",
	}
	for in, want := range bad {
		if _, err := ParseFingerprint(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFingerprint(%q) error = %v, want it to mention %q", in, err, want)
		}
	}
}

// ndesBundle is an NDES-like GetCACert answer: CA, RA signing, RA encryption.
func ndesBundle(t *testing.T) (ca, raSign, raEnc *x509.Certificate) {
	caKey := testKey(t, 0)
	ca = testCert(t, caKey, "Corp Issuing CA", true, x509.KeyUsageCertSign, nil, nil)
	raSign = testCert(t, testKey(t, 1), "NDES-MSCEP-RA sign", false, x509.KeyUsageDigitalSignature, ca, caKey)
	raEnc = testCert(t, testKey(t, 2), "NDES-MSCEP-RA enc", false, x509.KeyUsageKeyEncipherment, ca, caKey)
	return
}

func TestCACertsClassifyRecipientPin(t *testing.T) {
	ca, raSign, raEnc := ndesBundle(t)
	der, err := pkcs7.DegenerateCertificate(append(append(append([]byte{}, ca.Raw...), raSign.Raw...), raEnc.Raw...))
	if err != nil {
		t.Fatal(err)
	}
	// Served with a wrong content type on purpose: the body decides.
	certs, err := ParseCACerts(der, "application/x-x509-ca-cert")
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]Role{}
	for _, c := range certs.Certs {
		roles[c.Subject.CommonName] = c.Role
	}
	want := map[string]Role{"Corp Issuing CA": RoleCA, "NDES-MSCEP-RA sign": RoleRASigning, "NDES-MSCEP-RA enc": RoleRAEncryption}
	if !reflect.DeepEqual(roles, want) {
		t.Errorf("roles = %v, want %v", roles, want)
	}
	if r, err := certs.Recipient(); err != nil || !r.Equal(raEnc) {
		t.Errorf("Recipient = %v, %v; want the RA encryption certificate", r.Subject, err)
	}
	if !certs.Issuer().Equal(ca) {
		t.Errorf("Issuer = %v, want the CA", certs.Issuer().Subject)
	}

	// A pin on the CA keeps the RAs it issued and drops an intruder.
	intruderKey := testKey(t, 3)
	intruder := testCert(t, intruderKey, "intruder", false, x509.KeyUsageKeyEncipherment, nil, nil)
	withIntruder := NewCACerts(append([]*x509.Certificate{intruder}, certs.All()...))
	pinned, err := withIntruder.Pin(FingerprintOf(ca, crypto.SHA1))
	if err != nil {
		t.Fatal(err)
	}
	if len(pinned.Certs) != 3 || len(pinned.Ignored) != 1 || !pinned.Ignored[0].Equal(intruder) {
		t.Errorf("pinned kept %d, ignored %v", len(pinned.Certs), pinned.Ignored)
	}
	if r, _ := pinned.Recipient(); !r.Equal(raEnc) {
		t.Errorf("Recipient after pin = %v", r.Subject)
	}

	// A mismatch names both fingerprints.
	other := FingerprintOf(intruder, crypto.SHA256)
	_, err = certs.Pin(other)
	var mm *FingerprintMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Pin(wrong) = %v, want *FingerprintMismatchError", err)
	}
	if !strings.Contains(err.Error(), other.Hex()) || !strings.Contains(err.Error(), FingerprintOf(ca, crypto.SHA256).Hex()) {
		t.Errorf("mismatch error does not show both fingerprints: %v", err)
	}
}

func TestParseCACertsShapes(t *testing.T) {
	ca := testCert(t, testKey(t, 0), "CA", true, x509.KeyUsageCertSign, nil, nil)
	p7, _ := pkcs7.DegenerateCertificate(ca.Raw)
	for name, body := range map[string][]byte{
		"DER":       ca.Raw,
		"PKCS#7":    p7,
		"PEM":       []byte("-----BEGIN CERTIFICATE-----\n" + b64(ca.Raw) + "\n-----END CERTIFICATE-----\n"),
		"PEM PKCS7": []byte("-----BEGIN PKCS7-----\n" + b64(p7) + "\n-----END PKCS7-----\n"),
	} {
		got, err := ParseCACerts(body, "application/octet-stream")
		if err != nil || len(got.Certs) != 1 || got.Certs[0].Role != RoleCA {
			t.Errorf("%s: %v %v", name, got, err)
		}
	}
	for name, body := range map[string][]byte{
		"empty": nil,
		"html":  []byte("<html><body>Service Unavailable</body></html>"),
		"junk":  {0x30, 0x03, 0x02, 0x01},
	} {
		if _, err := ParseCACerts(body, "text/html"); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	// No RSA certificate at all: a clear error.
	ec := NewCACerts(nil)
	if _, err := ec.Recipient(); err == nil || !errors.Is(err, errNoRSARecipient) {
		t.Errorf("Recipient of nothing = %v", err)
	}
}

func TestNewCSRChallengeSANsKeyUsage(t *testing.T) {
	key := testKey(t, 0)
	u, _ := url.Parse("spiffe://corp/ns/app")
	der, err := NewCSR(CSRTemplate{
		Subject:           pkix.Name{CommonName: "app.corp", Organization: []string{"Corp"}},
		DNSNames:          []string{"app.corp", "www.app.corp"},
		EmailAddresses:    []string{"ops@corp"},
		URIs:              []*url.URL{u},
		UPNs:              []string{"app@corp.example"},
		KeyUsage:          x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ChallengePassword: "s3cret",
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if pw, err := ChallengePassword(der); err != nil || pw != "s3cret" {
		t.Errorf("challenge = %q, %v", pw, err)
	}
	if !reflect.DeepEqual(csr.DNSNames, []string{"app.corp", "www.app.corp"}) || !reflect.DeepEqual(csr.EmailAddresses, []string{"ops@corp"}) || len(csr.URIs) != 1 || csr.URIs[0].String() != u.String() {
		t.Errorf("SANs = %v %v %v", csr.DNSNames, csr.EmailAddresses, csr.URIs)
	}
	if upns, err := UPNs(csr.Extensions); err != nil || !reflect.DeepEqual(upns, []string{"app@corp.example"}) {
		t.Errorf("UPNs = %v, %v", upns, err)
	}
	// The key usage extension reads back through a certificate made from it.
	var ku pkix.Extension
	for _, e := range csr.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			ku = e
		}
	}
	if !ku.Critical {
		t.Fatalf("no critical keyUsage extension in %v", csr.Extensions)
	}
	cert := certFromCSR(t, csr)
	if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("key usage = %v", cert.KeyUsage)
	}

	// Rebuild: same subject and extensions, byte for byte, plus a challenge.
	tmpl := TemplateFromCSR(csr)
	tmpl.ChallengePassword = "other"
	der2, err := NewCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr2, _ := x509.ParseCertificateRequest(der2)
	if string(csr2.RawSubject) != string(csr.RawSubject) || !reflect.DeepEqual(csr2.Extensions, csr.Extensions) {
		t.Errorf("rebuilt request differs in subject or extensions")
	}
}
