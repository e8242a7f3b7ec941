package attack

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// Waits. Refusals come within a second or two; issuance through
// cert-manager within seconds; the margins are for a loaded machine.
const (
	finishTimeout = 90 * time.Second
	eventTimeout  = 30 * time.Second
	readyTimeout  = 60 * time.Second
)

// eventually polls cond every 100 ms until it holds, or fails the test after
// timeout with cond's last message.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// create writes obj with c and deletes it (as the admin) when the test ends.
func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { remove(t, obj) })
}

// remove deletes obj as the admin, first dropping finalizers the suite
// set. It runs in cleanups, after the test's context is cancelled.
func remove(t *testing.T, obj client.Object) {
	c := world.st.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(obj.GetFinalizers()) > 0 {
		_ = c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
	}
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		t.Logf("cleaning up %T %s: %v", obj, obj.GetName(), err)
	}
}

// ---- Peers ----

// tally is what a SCEP server has received so far; messages is how many
// pkiMessages it recorded, where a row's own begin.
type tally struct{ pkcsReq, certPoll, pkiOperations, messages int }

func tallyOf(s *scepserver.Server) tally {
	return tally{s.PKIMessages("PKCSReq"), s.PKIMessages("CertPoll"), s.Requests(scepserver.OpPKIOperation), len(s.PKIRequests())}
}

func talliesOf(peers []*scepserver.Server) []tally {
	out := make([]tally, len(peers))
	for i, p := range peers {
		out[i] = tallyOf(p)
	}
	return out
}

// messagesFor returns the pkiMessages s received for cr since its
// since-th: those whose CSR holds cr's key (Rebuild keeps the key) and
// those carrying cr's transactionID (CertPoll carries no CSR).
func messagesFor(t *testing.T, s *scepserver.Server, cr *cmapi.CertificateRequest, since int) []scepserver.PKIRequest {
	t.Helper()
	pub := csrOf(t, cr).PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	tx, _ := signer.TransactionIDOf(cr)
	var out []scepserver.PKIRequest
	for _, m := range s.PKIRequests()[since:] {
		if (m.CSR != nil && pub.Equal(m.CSR.PublicKey)) || (tx != "" && m.TransactionID == string(tx)) {
			out = append(out, m)
		}
	}
	return out
}

// listen serves h on ip (an address of this host, e.g. 127.0.0.2) and
// counts the connections that reach it; the base URL is http://ip:port.
func listen(t *testing.T, ip string, h http.Handler) (base string, connections func() int64) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listening on %s: %v", ip, err)
	}
	cl := &countingListener{Listener: l}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(cl) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + l.Addr().String(), cl.n.Load
}

type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// ---- Profiles ----

// inTeams selects the namespaces labelled with one of teams.
func inTeams(teams ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: teamLabel, Operator: metav1.LabelSelectorOpIn, Values: teams}}}
}

// clusterProfile is a ClusterSCEPProfile the cluster admin writes for srv:
// pinned to its CA, usable from tenant and victim, subjects
// CN=<anything>.<namespace>, no alternative names; change adjusts it. It
// waits until the profile is Ready.
func clusterProfile(t *testing.T, name string, srv *scepserver.Server, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.ClusterSCEPProfile {
	t.Helper()
	p := &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: scepv1alpha1.SCEPProfileSpec{
			URL:               srv.URL,
			CAFingerprint:     fingerprint(srv),
			Subject:           "CN=*.%namespace%",
			NamespaceSelector: inTeams(tenant, victim),
		},
	}
	if change != nil {
		change(&p.Spec)
	}
	t.Cleanup(func() { removeSigner(t, p) })
	create(t, admin(t), p)
	waitProfile(t, p, metav1.ConditionTrue)
	return p
}

// removeSigner deletes p's Passthrough signer Secret, which outlives p
// here: a later profile of the same name (go test -count) must not find a
// Secret made for another.
func removeSigner(t *testing.T, p scepv1alpha1.Profile) {
	ns := p.GetNamespace()
	if ns == "" {
		ns = clusterResourceNamespace
	}
	remove(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: profiles.SignerSecretName(p)}})
}

// staticChallenge stores a challenge password where a ClusterSCEPProfile
// reads it and returns the profile's challenge.
func staticChallenge(t *testing.T, name, password string) scepv1alpha1.Challenge {
	t.Helper()
	neverShown("Static challenge "+name, password)
	create(t, admin(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: clusterResourceNamespace, Name: name}, StringData: map[string]string{"password": password}})
	return scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: name}}
}

// waitProfile waits until p's Ready condition, for its generation, has
// status want (any status when want is empty), and returns the condition.
func waitProfile(t *testing.T, p scepv1alpha1.Profile, want metav1.ConditionStatus) *metav1.Condition {
	t.Helper()
	var cond *metav1.Condition
	eventually(t, readyTimeout, "profile "+p.GetName()+" Ready="+string(want), func() (bool, string) {
		if err := admin(t).Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		cond = meta.FindStatusCondition(p.GetStatus().Conditions, "Ready")
		if cond == nil {
			return false, "no Ready condition"
		}
		return (want == "" || cond.Status == want) && cond.ObservedGeneration == p.GetGeneration(), fmt.Sprintf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	})
	return cond
}

// refTo is an issuerRef naming p.
func refTo(p scepv1alpha1.Profile) cmmeta.IssuerReference {
	kind := "SCEPProfile"
	if p.GetNamespace() == "" {
		kind = "ClusterSCEPProfile"
	}
	return cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: kind, Name: p.GetName()}
}

// ---- Requests ----

// newKey is a fresh RSA-2048 key: every row's key is its own, so what a
// server received is attributed to the row by key.
func newKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrPEM builds a PEM CSR as cert-manager would (key usages
// DigitalSignature and KeyEncipherment unless tmpl says), with extra raw
// PKCS#10 attributes after the requested extensions.
func csrPEM(t *testing.T, key *rsa.PrivateKey, tmpl scep.CSRTemplate, attributes ...[]byte) []byte {
	t.Helper()
	if tmpl.KeyUsage == 0 {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	}
	der, err := scep.NewCSR(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(attributes) > 0 {
		der = withAttributes(t, der, key, attributes)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// withAttributes re-signs a DER CSR with attributes appended to its
// attribute set.
func withAttributes(t *testing.T, der []byte, key *rsa.PrivateKey, attributes [][]byte) []byte {
	t.Helper()
	var outer struct {
		Info asn1.RawValue
		Alg  pkix.AlgorithmIdentifier
		Sig  asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &outer); err != nil {
		t.Fatal(err)
	}
	var elems []asn1.RawValue // version, subject, subjectPKInfo, [0] attributes
	for b := outer.Info.Bytes; len(b) > 0; {
		var e asn1.RawValue
		var err error
		if b, err = asn1.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		elems = append(elems, e)
	}
	var attrs []byte
	if len(elems) == 4 {
		attrs = elems[3].Bytes
	}
	for _, a := range attributes {
		attrs = append(attrs, a...)
	}
	info := slices.Concat(elems[0].FullBytes, elems[1].FullBytes, elems[2].FullBytes,
		mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: attrs}))
	infoDER := mustMarshal(t, asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: info})
	digest := sha256.Sum256(infoDER)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	out := mustMarshal(t, struct {
		Info asn1.RawValue
		Alg  pkix.AlgorithmIdentifier
		Sig  asn1.BitString
	}{asn1.RawValue{FullBytes: infoDER}, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	csr, err := x509.ParseCertificateRequest(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attribute is a PKCS#10 Attribute: SEQUENCE { type, SET { values } }.
func attribute(t *testing.T, oid asn1.ObjectIdentifier, values ...[]byte) []byte {
	t.Helper()
	set := mustMarshal(t, asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: slices.Concat(values...)})
	return mustMarshal(t, asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: slices.Concat(mustMarshal(t, oid), set)})
}

// bmpString is an ASN.1 BMPString (UTF-16BE), as Microsoft's name-value
// pairs are encoded.
func bmpString(s string) asn1.RawValue {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return asn1.RawValue{Tag: 30, Bytes: b}
}

// Object identifiers the attacks use.
var (
	oidSubjectAltName     = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidBasicConstraints   = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtKeyUsage        = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidUPN                = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}
	oidServerAuth         = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidCodeSigning        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}
	oidAnyExtendedKeyUse  = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
	oidEnrollmentNameVals = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 13, 2, 1}
	// oidApplicationPolicies is Microsoft's application policies extension,
	// which AD CS honours over the EKU of schema version 1 templates
	// (ESC15, CVE-2024-49019).
	oidApplicationPolicies = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 21, 10}
	// szOID_ENROLL_CERTTYPE_EXTENSION: the AD CS template, by name.
	oidEnrollCertType = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2}
	// oidCertificateRequestAgent is the enrollment agent policy: a
	// certificate with it may request certificates for any user.
	oidCertificateRequestAgent = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}
	// oidObjectGUID is AD's object GUID otherName, which maps a
	// certificate to an account as UPNs do.
	oidObjectGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 25, 1}
)

// extension encodes v as an extension's value.
func extension(t *testing.T, oid asn1.ObjectIdentifier, critical bool, v any) pkix.Extension {
	t.Helper()
	return pkix.Extension{Id: oid, Critical: critical, Value: mustMarshal(t, v)}
}

// ekus is an extendedKeyUsage extension.
func ekus(t *testing.T, oids ...asn1.ObjectIdentifier) pkix.Extension {
	t.Helper()
	return extension(t, oidExtKeyUsage, false, oids)
}

// sans is a subjectAltName extension of raw GeneralNames.
func sans(t *testing.T, names ...asn1.RawValue) pkix.Extension {
	t.Helper()
	return extension(t, oidSubjectAltName, false, names)
}

// GeneralNames.
func dnsName(s string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(s)}
}

func otherName(t *testing.T, oid asn1.ObjectIdentifier, value any) asn1.RawValue {
	t.Helper()
	inner := mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, value)})
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: slices.Concat(mustMarshal(t, oid), inner)}
}

func upnName(t *testing.T, upn string) asn1.RawValue {
	t.Helper()
	return otherName(t, oidUPN, asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(upn)})
}

func directoryName(t *testing.T, n pkix.Name) asn1.RawValue {
	t.Helper()
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: mustMarshal(t, n.ToRDNSequence())}
}

func registeredID(t *testing.T, oid asn1.ObjectIdentifier) asn1.RawValue {
	t.Helper()
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(mustMarshal(t, oid), &raw); err != nil {
		t.Fatal(err)
	}
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: raw.Bytes}
}

// handMade is a CertificateRequest the attacker writes in tenant, naming p,
// with csr; change adjusts it before it is created.
func handMade(t *testing.T, name string, p scepv1alpha1.Profile, csr []byte, change func(*cmapi.CertificateRequest)) *cmapi.CertificateRequest {
	t.Helper()
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
		Spec: cmapi.CertificateRequestSpec{
			IssuerRef: refTo(p),
			Request:   csr,
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment},
		},
	}
	if change != nil {
		change(cr)
	}
	create(t, attacker(t), cr)
	return cr
}

// certificate is a Certificate (RSA-2048, a fresh key per issuance) in ns
// naming p, written with c; change adjusts it before it is created.
func certificate(t *testing.T, c client.Client, ns, name string, p scepv1alpha1.Profile, change func(*cmapi.Certificate)) *cmapi.Certificate {
	t.Helper()
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			CommonName: name + "." + ns,
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048, RotationPolicy: cmapi.RotationPolicyAlways},
			IssuerRef:  refTo(p),
		},
	}
	if change != nil {
		change(crt)
	}
	// Cleanups run last first: the Certificate goes, then what it made.
	t.Cleanup(func() { removeIssuance(t, crt) })
	create(t, c, crt)
	return crt
}

// removeIssuance deletes what cert-manager made for crt, which no garbage
// collector removes here: its requests (named after it and its revision),
// its Secret and its pending key Secrets. A later Certificate of the same
// name (go test -count) starts from nothing.
func removeIssuance(t *testing.T, crt *cmapi.Certificate) {
	c := world.st.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var crs cmapi.CertificateRequestList
	if err := c.List(ctx, &crs, client.InNamespace(crt.Namespace)); err == nil {
		for i := range crs.Items {
			if ref := metav1.GetControllerOfNoCopy(&crs.Items[i]); ref != nil && ref.UID == crt.UID {
				remove(t, &crs.Items[i])
			}
		}
	}
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(crt.Namespace)); err == nil {
		for i := range secrets.Items {
			s := &secrets.Items[i]
			if ref := metav1.GetControllerOfNoCopy(s); s.Name == crt.Spec.SecretName || (ref != nil && ref.UID == crt.UID) {
				remove(t, s)
			}
		}
	}
}

// requestOf waits for the CertificateRequest cert-manager makes for crt.
func requestOf(t *testing.T, crt *cmapi.Certificate) *cmapi.CertificateRequest {
	t.Helper()
	var found *cmapi.CertificateRequest
	eventually(t, finishTimeout, "cert-manager's request for Certificate "+crt.Name, func() (bool, string) {
		var list cmapi.CertificateRequestList
		if err := admin(t).List(t.Context(), &list, client.InNamespace(crt.Namespace)); err != nil {
			return false, err.Error()
		}
		for i := range list.Items {
			if ref := metav1.GetControllerOfNoCopy(&list.Items[i]); ref != nil && ref.UID == crt.UID {
				found = &list.Items[i]
				return true, ""
			}
		}
		return false, "none yet"
	})
	return found
}

// csrOf parses cr's CSR.
func csrOf(t *testing.T, cr *cmapi.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	b, _ := pem.Decode(cr.Spec.Request)
	if b == nil {
		t.Fatalf("request %s holds no PEM", cr.Name)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		t.Fatalf("request %s: %v", cr.Name, err)
	}
	return csr
}

func condition(cr *cmapi.CertificateRequest, ct cmapi.CertificateRequestConditionType) *cmapi.CertificateRequestCondition {
	for i := range cr.Status.Conditions {
		if cr.Status.Conditions[i].Type == ct {
			return &cr.Status.Conditions[i]
		}
	}
	return nil
}

// waitFinished waits until cr is issued (Ready True) or failed (Ready
// False, reason Failed) and returns it as it is then.
func waitFinished(t *testing.T, cr *cmapi.CertificateRequest) *cmapi.CertificateRequest {
	t.Helper()
	got := &cmapi.CertificateRequest{}
	eventually(t, finishTimeout, "CertificateRequest "+cr.Namespace+"/"+cr.Name+" to finish", func() (bool, string) {
		if err := admin(t).Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			if apierrors.IsNotFound(err) && remake(t, cr) {
				return false, "deleted by cert-manager; made again"
			}
			return false, err.Error()
		}
		c := condition(got, cmapi.CertificateRequestConditionReady)
		if c == nil {
			return false, "no Ready condition"
		}
		return c.Status == cmmeta.ConditionTrue || c.Reason == cmapi.CertificateRequestReasonFailed, fmt.Sprintf("Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	})
	return got
}

// ---- Events ----

// eventsAbout lists the Events regarding obj (of kind): this very object,
// by UID, not an earlier one of the same name.
func eventsAbout(t *testing.T, kind string, obj client.Object) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := admin(t).List(t.Context(), &list, client.InNamespace(obj.GetNamespace())); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == obj.GetName() && e.Regarding.UID == obj.GetUID() {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for a Warning Event with reason about the object whose
// note contains note.
func waitEvent(t *testing.T, kind string, obj client.Object, reason, note string) eventsv1.Event {
	t.Helper()
	var found eventsv1.Event
	eventually(t, eventTimeout, fmt.Sprintf("a Warning Event %s about %s %s", reason, kind, obj.GetName()), func() (bool, string) {
		var seen []string
		for _, e := range eventsAbout(t, kind, obj) {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && strings.Contains(e.Note, note) {
				found = e
				return true, ""
			}
			seen = append(seen, e.Type+" "+e.Reason+": "+e.Note)
		}
		return false, fmt.Sprintf("Events: %q", seen)
	})
	return found
}

// ---- Verdicts ----

// says reports whether msg contains one of the alternatives of want
// ("spec.subject | spec.subjectAltNames").
func says(msg, want string) bool {
	for _, alt := range strings.Split(want, " | ") {
		if strings.Contains(msg, strings.TrimSpace(alt)) {
			return true
		}
	}
	return false
}

// cleanText reports why s is not clean text a server may have put in a
// status: a control character, or more than maxBytes.
func cleanText(s string, maxBytes int) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) }); i >= 0 {
		return fmt.Errorf("holds the control character %q at byte %d", s[i], i)
	}
	if len(s) > maxBytes {
		return fmt.Errorf("is %d bytes long, over %d", len(s), maxBytes)
	}
	return nil
}

// verdict is what a request row expects.
type verdict struct {
	// issued: the request is issued by a peer (the control rows).
	issued bool
	// refused: the request fails before anything is sent, with the
	// SCEPPolicy condition False and one of these reasons, a Warning Event
	// PolicyViolation, and nothing of it at any peer.
	refused []string
	// rejected: the request was sent, and the server refused it; the
	// request fails without SCEPPolicy.
	rejected bool
	// says are what the Ready message must contain, each entry a set of
	// alternatives separated by " | " (the field, the value at fault).
	says []string
	// never must appear neither in the Ready message nor in the request's
	// Events.
	never []string
	// clean: the Ready message and the request's Events hold no control
	// character and are at most this many bytes (0: not checked).
	clean int
	// stateIgnored: the request's state annotation was ignored (Warning
	// Event SCEPStateIgnored) and what reached the peer is the request's
	// own PKCSReq, with the transactionID derived from the request.
	stateIgnored bool
}

// requestRow is one attack (or control) that ends in a CertificateRequest.
type requestRow struct {
	name string
	// attack writes the attacker's objects and returns the request to judge.
	attack func(t *testing.T) *cmapi.CertificateRequest
	want   verdict
	// then, when set, checks more once the verdict holds.
	then func(t *testing.T, cr *cmapi.CertificateRequest, since []tally)
	// madeBefore: the request was made before the row (a fixture other
	// rows use too): what peers received is judged from their start.
	madeBefore bool
}

// runRequestRows runs rows one after another (each peer's counts are
// deltas over one row), judging what reached peers.
func runRequestRows(t *testing.T, peers []*scepserver.Server, rows []requestRow) {
	t.Helper()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before := talliesOf(peers)
			if row.madeBefore {
				before = make([]tally, len(peers))
			}
			cr := row.attack(t)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("operator log lines about %s:\n%s", cr.Name, logLinesAbout(cr.Name))
				}
			})
			got := cr
			w := row.want
			switch {
			case len(w.refused) > 0:
				got = waitFinished(t, cr)
				expectRefused(t, got, w, peers, before)
			case w.issued:
				got = waitFinished(t, cr)
				expectIssued(t, got, peers, before)
			case w.rejected:
				got = waitFinished(t, cr)
				expectRejected(t, got, peers, before)
			}
			if len(w.says) > 0 || len(w.never) > 0 || w.clean > 0 {
				expectMessage(t, got, w)
			}
			if w.stateIgnored {
				expectStateIgnored(t, got, peers, before)
			}
			if row.then != nil {
				row.then(t, got, before)
			}
		})
	}
}

func readyOf(t *testing.T, cr *cmapi.CertificateRequest) *cmapi.CertificateRequestCondition {
	t.Helper()
	c := condition(cr, cmapi.CertificateRequestConditionReady)
	if c == nil {
		t.Fatalf("request %s has no Ready condition", cr.Name)
	}
	return c
}

func expectRefused(t *testing.T, cr *cmapi.CertificateRequest, w verdict, peers []*scepserver.Server, before []tally) {
	t.Helper()
	defer func() {
		for i, p := range peers {
			if m := messagesFor(t, p, cr, before[i].messages); len(m) > 0 {
				t.Errorf("%s received %d pkiMessage(s) of the refused request (first: %s, transaction %s)", p.URL, len(m), m[0].MessageType, m[0].TransactionID)
			}
			if after := tallyOf(p); after != before[i] {
				t.Errorf("%s received messages during the row: before %+v, after %+v", p.URL, before[i], after)
			}
		}
	}()
	ready := readyOf(t, cr)
	if ready.Status == cmmeta.ConditionTrue {
		t.Errorf("the attack succeeded: the request was issued (%s)", ready.Message)
		return
	}
	if ready.Reason != cmapi.CertificateRequestReasonFailed {
		t.Errorf("Ready = %s %s: %s; want Failed", ready.Status, ready.Reason, ready.Message)
	}
	pol := condition(cr, signer.ConditionPolicy)
	switch {
	case pol == nil:
		t.Errorf("no %s condition; Ready: %s", signer.ConditionPolicy, ready.Message)
	case pol.Status != cmmeta.ConditionFalse || !slices.Contains(w.refused, pol.Reason):
		t.Errorf("%s = %s %s: %s; want False with reason %s", signer.ConditionPolicy, pol.Status, pol.Reason, pol.Message, strings.Join(w.refused, " or "))
	}
	waitEvent(t, "CertificateRequest", cr, signer.EventPolicyViolation, "nothing was sent")
	t.Logf("refused: %s", ready.Message)
}

func expectIssued(t *testing.T, cr *cmapi.CertificateRequest, peers []*scepserver.Server, before []tally) {
	t.Helper()
	ready := readyOf(t, cr)
	if ready.Status != cmmeta.ConditionTrue {
		t.Fatalf("Ready = %s %s: %s; want issued", ready.Status, ready.Reason, ready.Message)
	}
	b, _ := pem.Decode(cr.Status.Certificate)
	if b == nil {
		t.Fatal("status.certificate holds no PEM")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(csrOf(t, cr).PublicKey) {
		t.Error("the certificate does not hold the CSR's key")
	}
	for i, p := range peers {
		for _, m := range messagesFor(t, p, cr, before[i].messages) {
			if m.MessageType == "PKCSReq" && m.Status == "SUCCESS" {
				if err := leaf.CheckSignatureFrom(p.CA); err != nil {
					t.Errorf("the certificate is not %s's: %v", p.URL, err)
				}
				return
			}
		}
	}
	t.Error("no peer recorded a PKCSReq of this request answered SUCCESS")
}

func expectRejected(t *testing.T, cr *cmapi.CertificateRequest, peers []*scepserver.Server, before []tally) {
	t.Helper()
	ready := readyOf(t, cr)
	if ready.Reason != cmapi.CertificateRequestReasonFailed {
		t.Errorf("Ready = %s %s: %s; want Failed", ready.Status, ready.Reason, ready.Message)
	}
	if pol := condition(cr, signer.ConditionPolicy); pol != nil {
		t.Errorf("%s = %s %s: the request fits its profile, the server refused it", signer.ConditionPolicy, pol.Status, pol.Reason)
	}
	n := 0
	for i, p := range peers {
		for _, m := range messagesFor(t, p, cr, before[i].messages) {
			if m.MessageType == "PKCSReq" && m.Status == "FAILURE" {
				n++
			}
		}
	}
	if n != 1 {
		t.Errorf("peers answered %d PKCSReq of this request with FAILURE, want 1", n)
	}
	waitEvent(t, "CertificateRequest", cr, signer.EventRejected, "")
}

// expectMessage checks the Ready message and, for never and clean, the
// request's Events.
func expectMessage(t *testing.T, cr *cmapi.CertificateRequest, w verdict) {
	t.Helper()
	msg := readyOf(t, cr).Message
	for _, s := range w.says {
		if !says(msg, s) {
			t.Errorf("the Ready message does not say %q: %s", s, msg)
		}
	}
	texts := map[string]string{"the Ready message": msg}
	for _, e := range eventsAbout(t, "CertificateRequest", cr) {
		texts["Event "+e.Reason] = e.Note
	}
	for where, text := range texts {
		for _, s := range w.never {
			if strings.Contains(text, s) {
				t.Errorf("%s holds %q: %.300q", where, s, text)
			}
		}
		if w.clean > 0 {
			if err := cleanText(text, w.clean); err != nil {
				t.Errorf("%s %v: %.300q", where, err, text)
			}
		}
	}
}

func expectStateIgnored(t *testing.T, cr *cmapi.CertificateRequest, peers []*scepserver.Server, before []tally) {
	t.Helper()
	waitEvent(t, "CertificateRequest", cr, signer.EventStateIgnored, signer.AnnotationState)
	tx, err := signer.TransactionIDOf(cr)
	if err != nil {
		t.Fatal(err)
	}
	var sent []scepserver.PKIRequest
	eventually(t, finishTimeout, "a pkiMessage of "+cr.Name+" at a peer", func() (bool, string) {
		sent = nil
		for i, p := range peers {
			sent = append(sent, messagesFor(t, p, cr, before[i].messages)...)
		}
		return len(sent) > 0, "none yet"
	})
	if first := sent[0]; first.MessageType != "PKCSReq" || first.TransactionID != string(tx) {
		t.Errorf("first message = %s with transaction %s; want PKCSReq with the request's own transaction %s", first.MessageType, first.TransactionID, tx)
	}
	for _, m := range sent {
		if m.TransactionID != string(tx) {
			t.Errorf("a %s carried transaction %s, not the request's own %s", m.MessageType, m.TransactionID, tx)
		}
	}
}

// logLinesAbout returns the operator's log lines that mention s.
func logLinesAbout(s string) string {
	var out []string
	for _, l := range strings.Split(operatorLog.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// ---- Profile rows ----

// profileVerdict is what a profile row expects of the profile's Ready
// condition and Events, and of the host the attack aimed at.
type profileVerdict struct {
	// ready: the profile turns Ready (the control rows); else it turns
	// not Ready with one of reasons.
	ready   bool
	reasons []string
	// says, never and clean: as in verdict, for the Ready message (says)
	// and the profile's status and Events (never, clean).
	says  []string
	never []string
	clean int
	// reached: the aimed-at host must have seen connections (controls);
	// else none.
	reached bool
}

// profileRow is an attack through a SCEPProfile the attacker writes.
type profileRow struct {
	name string
	// attack creates the profile and returns it with a count of the
	// connections that reached the host under attack.
	attack func(t *testing.T) (scepv1alpha1.Profile, func() int64)
	want   profileVerdict
	then   func(t *testing.T)
}

func runProfileRows(t *testing.T, rows []profileRow) {
	t.Helper()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			p, reached := row.attack(t)
			w := row.want
			var cond *metav1.Condition
			if w.ready {
				cond = waitProfile(t, p, metav1.ConditionTrue)
			} else {
				// The first check's verdict is the attack's outcome.
				cond = waitProfile(t, p, "")
				if cond.Status == metav1.ConditionTrue {
					t.Errorf("the attack succeeded: the profile is Ready (%s)", cond.Message)
				} else if !slices.Contains(w.reasons, cond.Reason) {
					t.Errorf("Ready reason %s: %s; want %s", cond.Reason, cond.Message, strings.Join(w.reasons, " or "))
				}
			}
			for _, s := range w.says {
				if !says(cond.Message, s) {
					t.Errorf("the Ready message does not say %q: %s", s, cond.Message)
				}
			}
			texts := map[string]string{}
			for _, c := range p.GetStatus().Conditions {
				texts["condition "+c.Type] = c.Message
			}
			kind := "SCEPProfile"
			if p.GetNamespace() == "" {
				kind = "ClusterSCEPProfile"
			}
			if cond.Status != metav1.ConditionTrue {
				waitEvent(t, kind, p, cond.Reason, "")
			}
			for _, e := range eventsAbout(t, kind, p) {
				texts["Event "+e.Reason] = e.Note
			}
			for where, text := range texts {
				for _, s := range w.never {
					if strings.Contains(text, s) {
						t.Errorf("%s holds %q: %.300q", where, s, text)
					}
				}
				if w.clean > 0 {
					if err := cleanText(text, w.clean); err != nil {
						t.Errorf("%s %v: %.300q", where, err, text)
					}
				}
			}
			switch n := reached(); {
			case w.reached && n == 0:
				t.Error("no connection reached the host: the row cannot tell a refusal from a broken test")
			case !w.reached && n > 0:
				t.Errorf("%d connection(s) reached the host the operator must not reach", n)
			}
			if row.then != nil {
				row.then(t)
			}
		})
	}
}

// noHost is a count for rows that aim at no host of their own.
func noHost() int64 { return 0 }

// ---- API rows ----

// apiRow is a write the API server must refuse (or, for a control,
// accept).
type apiRow struct {
	name string
	// attack makes the write and returns its error.
	attack func(t *testing.T) error
	// invalid, forbidden: the API server refuses the write so; neither
	// means the control's write is accepted.
	invalid, forbidden bool
	// says are what the API server's message must contain.
	says []string
	// reached, when set, counts what reached a peer: no refused write may
	// make it grow.
	reached func() int
}

func runAPIRows(t *testing.T, rows []apiRow) {
	t.Helper()
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			before := 0
			if row.reached != nil {
				before = row.reached()
			}
			err := row.attack(t)
			switch {
			case row.invalid && !apierrors.IsInvalid(err):
				t.Fatalf("err = %v; want the API server's Invalid", err)
			case row.forbidden && !apierrors.IsForbidden(err):
				t.Fatalf("err = %v; want Forbidden", err)
			case !row.invalid && !row.forbidden && err != nil:
				t.Fatalf("the control's write was refused: %v", err)
			}
			for _, s := range row.says {
				if msg := fmt.Sprint(err); !says(msg, s) {
					t.Errorf("the API server's message does not say %q: %s", s, msg)
				}
			}
			if row.reached != nil && (row.invalid || row.forbidden) {
				if after := row.reached(); after != before {
					t.Errorf("%d request(s) reached the peer after a refused write", after-before)
				}
			}
		})
	}
}

// objectMeta names an object.
func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

// expectChallenge checks that the request's PKCSReq at s (since before)
// carried the profile's challenge password: Rebuild added it.
func expectChallenge(t *testing.T, s *scepserver.Server, cr *cmapi.CertificateRequest, before tally, password string) {
	t.Helper()
	n := 0
	for _, m := range messagesFor(t, s, cr, before.messages) {
		if m.MessageType == "PKCSReq" {
			n++
			if m.ChallengePassword != password {
				t.Error("the PKCSReq did not carry the profile's challenge password")
			}
		}
	}
	if n == 0 {
		t.Error("no PKCSReq of the request reached the server")
	}
}

// tenantProfile is a SCEPProfile the attacker writes in tenant for url,
// pinned to ca when given, accepting any subject; change adjusts it.
func tenantProfile(t *testing.T, name, url string, ca *x509.Certificate, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.SCEPProfile {
	t.Helper()
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name},
		Spec:       scepv1alpha1.SCEPProfileSpec{URL: url, AllowAnySubject: true},
	}
	if ca != nil {
		p.Spec.CAFingerprint = scep.FingerprintOf(ca, crypto.SHA256).Hex()
	}
	if change != nil {
		change(&p.Spec)
	}
	t.Cleanup(func() { removeSigner(t, p) })
	create(t, attacker(t), p)
	return p
}

// try creates obj with c and returns the API server's answer; what it
// created is deleted when the test ends.
func try(t *testing.T, c client.Client, obj client.Object) error {
	t.Helper()
	if p, ok := obj.(scepv1alpha1.Profile); ok {
		t.Cleanup(func() { removeSigner(t, p) })
	}
	err := c.Create(t.Context(), obj)
	if err == nil {
		t.Cleanup(func() { remove(t, obj) })
	}
	return err
}

// fingerprint is srv's CA pin, as a profile's caFingerprint.
func fingerprint(srv *scepserver.Server) string {
	return scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()
}

// remakeable are hand-made requests owned by a frozen Certificate, by
// namespace/name. cert-manager's request manager deletes requests a
// Certificate owns but did not ask for, until its cache shows that the
// Certificate is being deleted; when that race takes one, the attacker (and
// waitFinished) simply makes it again, as a real attacker would.
var remakeable sync.Map

// keepMaking registers cr to be made again if cert-manager deletes it.
func keepMaking(cr *cmapi.CertificateRequest) {
	remakeable.Store(cr.Namespace+"/"+cr.Name, cr.DeepCopy())
}

// remake makes a registered request again; false if cr is not registered.
func remake(t *testing.T, cr *cmapi.CertificateRequest) bool {
	t.Helper()
	v, ok := remakeable.Load(cr.Namespace + "/" + cr.Name)
	if !ok {
		return false
	}
	again := v.(*cmapi.CertificateRequest).DeepCopy()
	again.ResourceVersion, again.UID, again.CreationTimestamp = "", "", metav1.Time{}
	if err := attacker(t).Create(t.Context(), again); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Logf("making %s again: %v", cr.Name, err)
	}
	return true
}
