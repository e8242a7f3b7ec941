package controllers_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/micromdm"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stepca"
)

// wrongFingerprint is a SHA-256 pin no test CA has.
const wrongFingerprint = "sha256:0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"

// profileEvents returns the Events regarding the profile named name in ns.
func profileEvents(t *testing.T, ns, name string) ([]eventsv1.Event, error) {
	t.Helper()
	var evs eventsv1.EventList
	if err := apiServer(t).Client.List(t.Context(), &evs, client.InNamespace(ns), client.MatchingFields{"regarding.name": name}); err != nil {
		return nil, err
	}
	return evs.Items, nil
}

// TestProfileReadyReasons: a profile that cannot be used says why, with a
// reason a person can act on and a message that names what to fix, in its
// Ready condition and in a Warning Event; the challenge password it read
// appears in neither, nor in the logs.
func TestProfileReadyReasons(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	const password = "pr0file-s3cret-value"
	mdm := micromdm.Start(t, micromdm.Options{Challenge: password})
	html := scepserver.Start(t, scepserver.Behavior{HTMLStatus200: true, FaultOperations: []string{scepserver.OpGetCACert}})
	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(untrusted.Close)
	m := startManager(t)
	c := apiServer(t).Client

	if err := c.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "challenge"}, Data: map[string][]byte{"password": []byte(password)}}); err != nil {
		t.Fatal(err)
	}
	static := func(secret string) scepv1alpha1.Challenge {
		return scepv1alpha1.Challenge{AllowUnpinnedHTTP: true, Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: secret}}
	}
	mdmSHA256 := scep.FingerprintOf(mdm.CA, crypto.SHA256).Hex()
	wantFP, err := scep.ParseFingerprint(wrongFingerprint)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		spec   scepv1alpha1.SCEPProfileSpec
		reason string
		// message must contain each of these.
		message []string
		// omits must not be in the message: the server's own words.
		omits []string
	}{
		{
			name:    "secret-not-found",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: mdm.URL, CSRMode: scepv1alpha1.CSRModeRebuild, Challenge: static("no-such-secret")},
			reason:  controllers.ReasonSecretNotFound,
			message: []string{"Secret " + ns + "/no-such-secret", "not found"},
		},
		{
			name:    "unreachable",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: "http://127.0.0.1:1/scep"},
			reason:  controllers.ReasonUnreachable,
			message: []string{"127.0.0.1:1", "connection refused"},
		},
		{
			// https to a server whose certificate the system roots do not trust.
			name:    "untrusted-tls",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: untrusted.URL + "/scep"},
			reason:  controllers.ReasonUnreachable,
			message: []string{"certificate signed by unknown authority"},
		},
		{
			name:    "bad-ca-bundle",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: "https://127.0.0.1:1/scep", TLS: &scepv1alpha1.TLSConfig{CABundle: "not a pem"}},
			reason:  controllers.ReasonInvalidSpec,
			message: []string{"spec.tls.caBundle", "no PEM certificate"},
		},
		{
			// The challenge Secret exists and is read before the server is asked.
			name:    "wrong-pin",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: mdm.URL, CAFingerprint: wrongFingerprint, CSRMode: scepv1alpha1.CSRModeRebuild, Challenge: static("challenge")},
			reason:  controllers.ReasonFingerprintMismatch,
			message: []string{wantFP.Hex(), mdmSHA256},
		},
		{
			name:    "html-portal",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: html.URL, CSRMode: scepv1alpha1.CSRModeRebuild, Challenge: static("challenge")},
			reason:  controllers.ReasonServerError,
			message: []string{"GetCACert", "an HTML page of", "text/html"},
			omits:   serverWords,
		},
		{
			// The operator's egress policy refuses cloud metadata addresses.
			name:    "metadata-address",
			spec:    scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: "http://169.254.169.254/latest/meta-data/"},
			reason:  controllers.ReasonDestinationRefused,
			message: []string{"169.254.169.254", "egress policy", "always refused"},
		},
	}
	profiles := make([]*scepv1alpha1.SCEPProfile, len(cases))
	for i, tc := range cases {
		profiles[i] = &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tc.name}, Spec: tc.spec}
		if err := c.Create(t.Context(), profiles[i]); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
	for i, tc := range cases {
		p := profiles[i]
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != tc.reason {
			t.Errorf("%s: Ready reason = %s (%s), want %s", tc.name, cond.Reason, cond.Message, tc.reason)
		}
		for _, part := range tc.message {
			if !strings.Contains(cond.Message, part) {
				t.Errorf("%s: Ready message %q does not contain %q", tc.name, cond.Message, part)
			}
		}
		for _, part := range tc.omits {
			if strings.Contains(cond.Message, part) {
				t.Errorf("%s: Ready message %q repeats the server's %q", tc.name, cond.Message, part)
			}
		}
		if strings.Contains(cond.Message, password) {
			t.Errorf("%s: the Ready message carries the challenge password", tc.name)
		}
		eventually(t, 15*time.Second, "a Warning Event "+tc.reason+" for profile "+tc.name, func() (bool, string) {
			evs, err := profileEvents(t, ns, p.Name)
			if err != nil {
				return false, err.Error()
			}
			var seen []string
			for _, e := range evs {
				if e.Regarding.Kind == "SCEPProfile" && e.Type == corev1.EventTypeWarning && e.Reason == tc.reason && e.Note == cond.Message {
					return true, ""
				}
				seen = append(seen, e.Type+"/"+e.Reason+": "+e.Note)
			}
			return false, "Events: " + strings.Join(seen, "; ")
		})
	}
	if n := mdm.Requests("PKIOperation") + html.Requests(scepserver.OpPKIOperation); n != 0 {
		t.Errorf("a profile check sent %d PKIOperation requests", n)
	}

	// Neither an Event, a condition nor a log line carries the password.
	var evs eventsv1.EventList
	if err := c.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if strings.Contains(e.Note, password) {
			t.Errorf("Event %s on %s carries the challenge password", e.Reason, e.Regarding.Name)
		}
	}
	for _, p := range profiles {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
			t.Fatal(err)
		}
		for _, cond := range p.Status.Conditions {
			if strings.Contains(cond.Message, password) {
				t.Errorf("profile %s condition %s carries the challenge password", p.Name, cond.Type)
			}
		}
	}
	if strings.Contains(m.logs(), password) {
		t.Errorf("the challenge password appears in the manager's logs")
	}
}

// TestFingerprintMismatchThenFixed: while the profile's pin does not match
// the server, an approved request waits (Pending, not Failed) and nothing is
// sent; once the pin is corrected the profile becomes Ready and the waiting
// request is issued.
func TestFingerprintMismatchThenFixed(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := micromdm.Start(t, micromdm.Options{})
	startManager(t)
	c := apiServer(t).Client

	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pinned"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, CAFingerprint: wrongFingerprint},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
	if cond.Reason != controllers.ReasonFingerprintMismatch {
		t.Fatalf("Ready = %s: %s, want FingerprintMismatch", cond.Reason, cond.Message)
	}

	key := rsaKey(2048, 0)
	cr := request(t, ns, "app-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}}, key), nil)
	setApproval(t, cr, true)
	eventually(t, 30*time.Second, "the request to wait for the profile", func() (bool, string) {
		got := &cmapi.CertificateRequest{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
			return false, err.Error()
		}
		ready := crCondition(got, cmapi.CertificateRequestConditionReady)
		if ready == nil {
			return false, "no Ready condition"
		}
		if ready.Reason == cmapi.CertificateRequestReasonFailed || ready.Status == "True" {
			t.Fatalf("the request finished while the profile was not Ready: %s %s: %s", ready.Status, ready.Reason, ready.Message)
		}
		return ready.Reason == cmapi.CertificateRequestReasonPending && strings.Contains(ready.Message, controllers.ReasonFingerprintMismatch),
			ready.Reason + ": " + ready.Message
	})
	if n := srv.Requests("PKIOperation"); n != 0 {
		t.Fatalf("the server saw %d PKIOperation requests while the pin did not match", n)
	}

	// Fix the pin.
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.CAFingerprint = scep.FingerprintOf(srv.CA, crypto.SHA256).Hex()
	if err := c.Patch(t.Context(), p, patch); err != nil {
		t.Fatal(err)
	}
	if cond := waitProfile(t, p, metav1.ConditionTrue, 30*time.Second); cond.Reason != controllers.ReasonChecked {
		t.Errorf("Ready reason = %s", cond.Reason)
	}
	issued(t, waitRequest(t, cr, 30*time.Second), srv.CA)
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want 1", n)
	}
}

// TestClusterProfileRebuildStepCA: a ClusterSCEPProfile reads its challenge
// Secret from the cluster resource namespace (not the request's), trusts
// step-ca's https endpoint through tls.caBundle, and in Rebuild mode enrolls
// with the Certificate's pending private key; a CSR whose key is not that
// pending key is refused before any transaction starts.
func TestClusterProfileRebuildStepCA(t *testing.T) {
	ns := namespace(t)
	const password = "cluster-st3p-challenge"
	srv := stepca.Start(t, stepca.Options{Challenge: password, IncludeRoot: true})
	m := startManager(t)
	c := apiServer(t).Client

	// Unique names: the Secret namespace and cluster-scoped profiles are
	// shared by the package's tests.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: clusterResourceNamespace, Name: ns + "-challenge"}, Data: map[string][]byte{"password": []byte(password + "\n")}}
	if err := c.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), secret) }) // t.Context() is done by then
	p := &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-step"},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL:       srv.URL,
			TLS:       &scepv1alpha1.TLSConfig{CABundle: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Root.Raw}))},
			CSRMode:   scepv1alpha1.CSRModeRebuild,
			Challenge: scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: secret.Name}},
		},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
	if cond := waitProfile(t, p, metav1.ConditionTrue, 30*time.Second); cond.Reason != controllers.ReasonChecked {
		t.Errorf("Ready reason = %s", cond.Reason)
	}

	// What cert-manager makes before the request: the Certificate, its
	// pending key Secret "app-next" and status.nextPrivateKeySecretName.
	key := rsaKey(2048, 5)
	pendingKeyFor(t, ns, "app", p, key)
	ann := map[string]string{cmapi.CertificateNameKey: "app"}
	cr := request(t, ns, "app-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}, DNSNames: []string{"app.example"}}, key), ann)
	setApproval(t, cr, true)
	got := waitRequest(t, cr, 60*time.Second)
	leaf := issued(t, got, srv.Root)
	if leaf.Subject.CommonName != "app" {
		t.Errorf("issued subject = %v", leaf.Subject)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: srv.RootPool, Intermediates: poolOf(srv.Intermediate), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the certificate does not chain to step-ca's root through its intermediate: %v", err)
	}
	// step-ca has no counters; its access log has a line per request. A
	// request created within the second the manager began to lead may be
	// asked about with a CertPoll first (creationTimestamp has one-second
	// resolution, so it may predate the lead; step-ca answers "not
	// implemented"): one issuance, at most one such poll.
	var sent int
	eventually(t, 10*time.Second, "step-ca to log the PKIOperation", func() (bool, string) {
		sent = stepCAPKIOperations(srv)
		n := stepCAIssuances(srv)
		return n == 1 && sent <= 2, fmt.Sprintf("%d certificates issued (want 1) in %d PKIOperation requests (want at most 2)", n, sent)
	})

	// A CSR made with another key than the pending one: refused, nothing
	// sent.
	bad := request(t, ns, "app-2", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "app"}, DNSNames: []string{"app.example"}}, rsaKey(2048, 6)), ann)
	setApproval(t, bad, true)
	bad = waitRequest(t, bad, 30*time.Second)
	ready := crCondition(bad, cmapi.CertificateRequestConditionReady)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "does not match") || !strings.Contains(ready.Message, ns+"/app-next") {
		t.Errorf("Ready = %s %s: %s", ready.Status, ready.Reason, ready.Message)
	}
	if st := bad.Annotations[signer.AnnotationState]; st != "" {
		t.Errorf("transaction state %q written for a CSR whose key is not the pending key", st)
	}
	if n := stepCAPKIOperations(srv); n != sent {
		t.Errorf("step-ca logged %d PKIOperation requests, want %d (none for the refused request)", n, sent)
	}

	for _, r := range []*cmapi.CertificateRequest{got, bad} {
		for _, cond := range r.Status.Conditions {
			if strings.Contains(cond.Message, password) {
				t.Errorf("%s condition %s carries the challenge password", r.Name, cond.Type)
			}
		}
	}
	if strings.Contains(m.logs(), password) {
		t.Errorf("the challenge password appears in the manager's logs")
	}
}

// stepCAPKIOperations counts the PKIOperation requests in step-ca's access log.
func stepCAPKIOperations(srv *stepca.Server) int {
	return strings.Count(srv.Log(), "?operation=PKIOperation\"")
}

// stepCAIssuances counts the PKIOperation requests step-ca answered with a
// certificate (its access log names the certificate it signed).
func stepCAIssuances(srv *stepca.Server) int {
	n := 0
	for _, line := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(line, "?operation=PKIOperation\"") && strings.Contains(line, " certificate=") {
			n++
		}
	}
	return n
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// TestServerFailureIsPermanent: a CertRep FAILURE is the CA's answer, not
// an outage: the request fails at once with the failInfo and the server's
// own text, after exactly one PKCSReq.
func TestServerFailureIsPermanent(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	badRequest := scepserver.BadRequest
	srv := scepserver.Start(t, scepserver.Behavior{FailInfo: &badRequest, FailInfoText: "denied by policy X"})
	startManager(t)
	c := apiServer(t).Client
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refuses"},
		Spec:       scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: srv.URL, CAFingerprint: scep.FingerprintOf(srv.CA, crypto.SHA256).Hex(), RetryInterval: duration(time.Second)},
	}
	if err := c.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	cr := request(t, ns, "refused-1", refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: "refused"}}, rsaKey(2048, 0)), nil)
	setApproval(t, cr, true)
	got := waitRequest(t, cr, 30*time.Second)
	ready := crCondition(got, cmapi.CertificateRequestConditionReady)
	if ready.Reason != cmapi.CertificateRequestReasonFailed {
		t.Fatalf("Ready = %s %s: %s, want Failed", ready.Status, ready.Reason, ready.Message)
	}
	for _, part := range []string{"badRequest", "denied by policy X"} {
		if !strings.Contains(ready.Message, part) {
			t.Errorf("message %q does not contain %q", ready.Message, part)
		}
	}
	if n := srv.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the server saw %d PKCSReq, want exactly 1 (a FAILURE is not retried)", n)
	}
	if n := stateOf(got).FailedAttempts; n != 0 {
		t.Errorf("a FAILURE was counted as a failed attempt: %d", n)
	}
}
