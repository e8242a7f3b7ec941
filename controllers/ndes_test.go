package controllers_test

import (
	"crypto/x509/pkix"
	"encoding/pem"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// ndesUser is the emulator's default account as an operator would write it.
const ndesUser = ndes.DefaultDomain + `\` + ndes.DefaultUsername

// ndesCredentials creates the Dynamic challenge's credentials Secret.
func ndesCredentials(t *testing.T, ns, name, user, password string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"username": []byte(user), "password": []byte(password)},
	}
	if err := apiServer(t).Client.Create(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// ndesDynamicSpec is a Rebuild profile spec for the emulator with a Dynamic
// challenge from its admin page, pinned by the thumbprint the admin page
// prints.
func ndesDynamicSpec(srv *ndes.Server, auth, secret string) scepv1alpha1.SCEPProfileSpec {
	return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
		URL:           srv.URL,
		CAFingerprint: srv.Thumbprint,
		CSRMode:       scepv1alpha1.CSRModeRebuild,
		RetryInterval: duration(time.Second),
		Challenge: scepv1alpha1.Challenge{
			Type: scepv1alpha1.ChallengeDynamic,
			Dynamic: &scepv1alpha1.DynamicChallenge{AllowPlainHTTP: true,
				URL:                  srv.AdminURL,
				Auth:                 auth,
				CredentialsSecretRef: scepv1alpha1.LocalObjectReference{Name: secret},
			},
		},
	}
}

// ndesProfile creates a SCEPProfile.
func ndesProfile(t *testing.T, ns, name string, spec scepv1alpha1.SCEPProfileSpec, annotations map[string]string) *scepv1alpha1.SCEPProfile {
	t.Helper()
	p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}, Spec: spec}
	if err := apiServer(t).Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// ndesRequest creates what cert-manager creates for a Certificate named
// certName (the Certificate and its pending key, with key rsaKey(2048, keyIdx))
// and an approved request for it with common name cn.
func ndesRequest(t *testing.T, ns string, p scepv1alpha1.Profile, certName string, keyIdx int, cn string) *cmapi.CertificateRequest {
	t.Helper()
	key := rsaKey(2048, keyIdx)
	pendingKeyFor(t, ns, certName, p, key)
	csr := csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{certName + ".example"}}, key)
	cr := request(t, ns, certName+"-1", refTo(p), csr, map[string]string{cmapi.CertificateNameKey: certName})
	setApproval(t, cr, true)
	return cr
}

// getRequest reads cr fresh from the API server.
func getRequest(t *testing.T, cr *cmapi.CertificateRequest) *cmapi.CertificateRequest {
	t.Helper()
	got := &cmapi.CertificateRequest{}
	if err := apiServer(t).Client.Get(t.Context(), client.ObjectKeyFromObject(cr), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// readyOf is the request's Ready condition as "Status Reason: Message".
func readyOf(cr *cmapi.CertificateRequest) (*cmapi.CertificateRequestCondition, string) {
	c := crCondition(cr, cmapi.CertificateRequestConditionReady)
	if c == nil {
		return nil, "no Ready condition"
	}
	return c, string(c.Status) + " " + c.Reason + ": " + c.Message
}

// sentChallenges are the challenge passwords of the PKCSReqs the emulator saw.
func sentChallenges(srv *ndes.Server) []string {
	var out []string
	for _, r := range srv.SCEP.PKIRequests() {
		if r.ChallengePassword != "" {
			out = append(out, r.ChallengePassword)
		}
	}
	return out
}

// noSecretsLeaked fails the test if any of secrets appears in the manager's
// logs, in an Event of ns, in the conditions or annotations of the requests,
// or in the conditions of the profiles.
func noSecretsLeaked(t *testing.T, m *manager, ns string, objs []client.Object, secrets ...string) {
	t.Helper()
	c := apiServer(t).Client
	var evs eventsv1.EventList
	if err := c.List(t.Context(), &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) == 0 {
		t.Errorf("no Events were recorded in %s", ns)
	}
	logs := m.logs()
	for _, s := range secrets {
		if s == "" {
			t.Fatal("an empty secret to look for")
		}
		if strings.Contains(logs, s) {
			t.Errorf("secret %.3s… appears in the manager's logs", s)
		}
		for _, e := range evs.Items {
			if strings.Contains(e.Note, s) {
				t.Errorf("Event %s (%s) carries secret %.3s…", e.Name, e.Reason, s)
			}
		}
		for _, o := range objs {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(o), o); err != nil {
				t.Fatal(err)
			}
			for k, v := range o.GetAnnotations() {
				if strings.Contains(v, s) {
					t.Errorf("annotation %s of %s carries secret %.3s…", k, o.GetName(), s)
				}
			}
			switch o := o.(type) {
			case *cmapi.CertificateRequest:
				for _, cond := range o.Status.Conditions {
					if strings.Contains(cond.Message, s) {
						t.Errorf("condition %s of request %s carries secret %.3s…", cond.Type, o.Name, s)
					}
				}
			case *scepv1alpha1.SCEPProfile:
				for _, cond := range o.Status.Conditions {
					if strings.Contains(cond.Message, s) {
						t.Errorf("condition %s of profile %s carries secret %.3s…", cond.Type, o.Name, s)
					}
				}
			}
		}
	}
}

// TestNDESDynamicChallenge: a Rebuild profile with NDES's Dynamic challenge,
// pinned by the MD5 thumbprint the admin page prints, becomes Ready without
// fetching a password; an enrollment fetches exactly one over NTLM, NDES
// consumes it and issues; neither the account's password nor the challenge
// reaches logs, Events, conditions or annotations.
func TestNDESDynamicChallenge(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{})
	m := startManager(t)
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	p := ndesProfile(t, ns, "ndes", ndesDynamicSpec(srv, "NTLM", "ndes-agent"), nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	if c := srv.Counters(); c.PasswordsIssued != 0 || c.AdminRequests != 0 {
		t.Errorf("the profile check fetched passwords: %d issued, %d admin requests", c.PasswordsIssued, c.AdminRequests)
	}

	cr := ndesRequest(t, ns, p, "router", 0, "router")
	got := waitRequest(t, cr, 30*time.Second)
	issued(t, got, srv.CA)

	c := srv.Counters()
	if c.PasswordsIssued != 1 || c.PasswordsConsumed != 1 || c.PasswordsRefused != 0 || c.PKCSReq != 1 {
		t.Errorf("passwords issued %d, consumed %d, refused %d, PKCSReq %d; want 1, 1, 0, 1", c.PasswordsIssued, c.PasswordsConsumed, c.PasswordsRefused, c.PKCSReq)
	}
	if c.LastAuthUser != ndesUser || !strings.HasPrefix(c.LastAuthScheme, "NTLM") {
		t.Errorf("admin page authenticated %q with %q, want %s over NTLM", c.LastAuthUser, c.LastAuthScheme, ndesUser)
	}
	challenges := sentChallenges(srv)
	if len(challenges) != 1 {
		t.Fatalf("PKCSReqs carried %d challenge passwords, want 1", len(challenges))
	}
	if u := srv.UnusedPasswords(); u != 0 {
		t.Errorf("%d unused passwords left in NDES's cache, want 0", u)
	}
	noSecretsLeaked(t, m, ns, []client.Object{got, p}, ndes.DefaultPassword, challenges[0])
}

// TestNDESReusedPasswordSurfaced: a Static profile holding one NDES one-time
// password enrolls once; the second request, whose password NDES has seen,
// fails with NDES's failInfo and error code rather than being retried.
func TestNDESReusedPasswordSurfaced(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{})
	startManager(t)
	c := apiServer(t).Client
	pw := srv.IssuePassword()
	if pw == "" {
		t.Fatal("the emulator issued no password")
	}
	if err := c.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ndes-password"}, Data: map[string][]byte{"password": []byte(pw)}}); err != nil {
		t.Fatal(err)
	}
	p := ndesProfile(t, ns, "ndes-static", scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
		URL:           srv.URL,
		CAFingerprint: srv.Thumbprint,
		CSRMode:       scepv1alpha1.CSRModeRebuild,
		RetryInterval: duration(time.Second),
		Challenge:     scepv1alpha1.Challenge{Type: scepv1alpha1.ChallengeStatic, PasswordSecretRef: &scepv1alpha1.SecretKeySelector{Name: "ndes-password"}},
	}, nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

	issued(t, waitRequest(t, ndesRequest(t, ns, p, "first", 0, "first"), 30*time.Second), srv.CA)

	second := waitRequest(t, ndesRequest(t, ns, p, "second", 1, "second"), 30*time.Second)
	ready, desc := readyOf(second)
	// NDES sends no text, only its error code: shown in words.
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "badRequest") ||
		!strings.Contains(ready.Message, "0x80070056") || !strings.Contains(ready.Message, "password was refused") {
		t.Errorf("second request: %s; want Failed with badRequest and NDES's code 0x80070056 in words", desc)
	}
	requestEventSays(t, second, "SCEPRejected", "0x80070056", "password was refused")
	if cnt := srv.Counters(); cnt.PKCSReq != 2 || cnt.PasswordsConsumed != 1 || cnt.PasswordsRefused != 1 {
		t.Errorf("PKCSReq %d, consumed %d, refused %d; want 2, 1, 1 (a refused password is not retried)", cnt.PKCSReq, cnt.PasswordsConsumed, cnt.PasswordsRefused)
	}
}

// testClock is a settable clock for the emulator.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// TestNDESPasswordCacheFull: with NDES's password cache full, a Dynamic
// request shows SCEPChallenge=False/PasswordCacheFull, waits (counting an
// attempt) without failing, and is issued once the passwords expire.
func TestNDESPasswordCacheFull(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	clk := &testClock{}
	srv := startNDES(t, ndes.Options{CacheSize: 3, Now: clk.now})
	startManager(t)
	for srv.UnusedPasswords() < 3 {
		if srv.IssuePassword() == "" {
			t.Fatal("the cache filled before UnusedPasswords reached CacheSize")
		}
	}
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	spec := ndesDynamicSpec(srv, "NTLM", "ndes-agent")
	spec.MaxAttempts = 20
	spec.MaxRetryInterval = duration(2 * time.Second)
	p := ndesProfile(t, ns, "ndes", spec, nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

	cr := ndesRequest(t, ns, p, "full", 0, "full")
	// notFailed reads cr and stops the test if it failed.
	notFailed := func() *cmapi.CertificateRequest {
		got := getRequest(t, cr)
		if ready, desc := readyOf(got); ready != nil && ready.Reason == cmapi.CertificateRequestReasonFailed {
			t.Fatalf("the request failed while the cache was full: %s", desc)
		}
		return got
	}
	eventually(t, 30*time.Second, "an attempt counted against the full cache", func() (bool, string) {
		got := notFailed()
		n := stateOf(got).FailedAttempts
		return n >= 1 && srv.Counters().CacheFullPages >= 1, "failed attempts " + strconv.Itoa(n)
	})
	// While it waits, the request says why: SCEPChallenge=False/PasswordCacheFull,
	// from the moment it appears on every read over several retry intervals
	// (as a person running kubectl would see it). How many reads fit in the
	// window depends on the machine; that none shows anything else does not.
	cacheFull := func(cr *cmapi.CertificateRequest) (bool, string) {
		ch := crCondition(cr, signer.ConditionChallenge)
		if ch == nil {
			return false, "no SCEPChallenge condition"
		}
		return ch.Status == cmmeta.ConditionFalse && ch.Reason == signer.ReasonPasswordCacheFull, string(ch.Status) + " " + ch.Reason + ": " + ch.Message
	}
	eventually(t, 30*time.Second, "SCEPChallenge=False/PasswordCacheFull", func() (bool, string) {
		return cacheFull(notFailed())
	})
	reads := 0
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		reads++
		if ok, desc := cacheFull(notFailed()); !ok {
			t.Errorf("read %d of a full cache shows SCEPChallenge %s; want False/PasswordCacheFull until the cache has room", reads, desc)
			break
		}
	}
	t.Logf("SCEPChallenge=False/PasswordCacheFull on all %d reads over 4s of a full cache", reads)
	if cnt := srv.Counters(); cnt.PKCSReq != 0 {
		t.Errorf("PKCSReq %d while the cache was full, want 0", cnt.PKCSReq)
	}

	// An hour later the unused passwords have expired.
	srv.Set(func(o *ndes.Options) {
		clk.advance(ndes.DefaultPasswordValidity + time.Minute)
		o.Now = clk.now
	})
	got := waitRequest(t, cr, 30*time.Second)
	issued(t, got, srv.CA)
	if n := stateOf(got).FailedAttempts; n < 1 {
		t.Errorf("failed attempts recorded = %d, want ≥1 (a full cache counts an attempt)", n)
	}
	if cnt := srv.Counters(); cnt.PKCSReq != 1 || cnt.PasswordsConsumed != 1 {
		t.Errorf("PKCSReq %d, consumed %d; want 1, 1", cnt.PKCSReq, cnt.PasswordsConsumed)
	}
}

// TestNDESWrongCredentials: refused admin credentials show on the profile as
// CredentialsRejected (naming the user, never the password) and hold
// requests Pending until fixed and revalidated; Basic is checked over https
// and refused over plain http without contacting NDES.
func TestNDESWrongCredentials(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	m := startManager(t)
	c := apiServer(t).Client
	const wrong = "Wr0ng-Passw0rd!"

	t.Run("NTLM", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{})
		creds := ndesCredentials(t, ns, "ntlm-agent", ndesUser, wrong)
		p := ndesProfile(t, ns, "ntlm", ndesDynamicSpec(srv, "NTLM", "ntlm-agent"), nil)
		// The periodic check does not try the credentials.
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

		cr := ndesRequest(t, ns, p, "ntlm-app", 0, "ntlm-app")
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonCredentialsRejected || !strings.Contains(cond.Message, ndes.DefaultUsername) || strings.Contains(cond.Message, wrong) {
			t.Errorf("profile Ready = %s: %s; want CredentialsRejected naming %s, without the password", cond.Reason, cond.Message, ndes.DefaultUsername)
		}
		// The request waits for the profile; it is not failed.
		time.Sleep(2 * time.Second)
		ready, desc := readyOf(getRequest(t, cr))
		if ready == nil || ready.Status == cmmeta.ConditionTrue || ready.Reason != cmapi.CertificateRequestReasonPending {
			t.Errorf("request: %s; want Pending", desc)
		}
		if cnt := srv.Counters(); cnt.PKCSReq != 0 || cnt.PasswordsIssued != 0 || cnt.AuthFailures == 0 {
			t.Errorf("PKCSReq %d, passwords issued %d, auth failures %d; want 0, 0, ≥1", cnt.PKCSReq, cnt.PasswordsIssued, cnt.AuthFailures)
		}

		// Fix the Secret and ask for a check of the credentials.
		eventuallyNoConflict(t, func() error {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(creds), creds); err != nil {
				return err
			}
			creds.Data["password"] = []byte(ndes.DefaultPassword)
			return c.Update(t.Context(), creds)
		})
		eventuallyNoConflict(t, func() error {
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[controllers.AnnotationValidateCredentials] = "fixed-1"
			return c.Update(t.Context(), p)
		})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		issued(t, waitRequest(t, cr, 30*time.Second), srv.CA)
		noSecretsLeaked(t, m, ns, []client.Object{cr, p}, wrong, ndes.DefaultPassword)
	})

	t.Run("BasicHTTPS", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{TLS: true, Auth: ndes.AuthBasic})
		ndesCredentials(t, ns, "basic-agent", ndesUser, wrong)
		spec := ndesDynamicSpec(srv, "Basic", "basic-agent")
		// The SCEP url and the admin page each have their own trust.
		bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.HTTP.Certificate().Raw}))
		spec.TLS = &scepv1alpha1.TLSConfig{CABundle: bundle}
		spec.Challenge.Dynamic.AllowPlainHTTP = false
		spec.Challenge.Dynamic.TLS = &scepv1alpha1.TLSConfig{CABundle: bundle}
		p := ndesProfile(t, ns, "basic", spec, map[string]string{controllers.AnnotationValidateCredentials: "1"})
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonCredentialsRejected || !strings.Contains(cond.Message, ndes.DefaultUsername) || strings.Contains(cond.Message, wrong) {
			t.Errorf("profile Ready = %s: %s; want CredentialsRejected naming %s, without the password", cond.Reason, cond.Message, ndes.DefaultUsername)
		}
		if cnt := srv.Counters(); cnt.AuthFailures == 0 || cnt.PasswordsIssued != 0 {
			t.Errorf("auth failures %d, passwords issued %d; want ≥1, 0", cnt.AuthFailures, cnt.PasswordsIssued)
		}
		noSecretsLeaked(t, m, ns, []client.Object{p}, wrong)
	})

	// Basic over plain http sends the account's password in clear text: it
	// takes the profile's explicit allowPlainHTTP (the API refuses an
	// http admin url without it; profiles.TestCheckTransport and
	// ndes.TestNewRefuses cover objects stored before that rule), and the
	// profile carries a Warning Event for as long as it is so.
	t.Run("BasicHTTP", func(t *testing.T) {
		srv := startNDES(t, ndes.Options{Auth: ndes.AuthBasic})
		ndesCredentials(t, ns, "plain-agent", ndesUser, ndes.DefaultPassword)
		p := ndesProfile(t, ns, "plain", ndesDynamicSpec(srv, "Basic", "plain-agent"), map[string]string{controllers.AnnotationValidateCredentials: "1"})
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		eventually(t, 15*time.Second, "a Warning Event "+controllers.EventPlainHTTP, func() (bool, string) {
			evs, err := profileEvents(t, ns, p.Name)
			if err != nil {
				return false, err.Error()
			}
			for _, e := range evs {
				if e.Type == corev1.EventTypeWarning && e.Reason == controllers.EventPlainHTTP && strings.Contains(e.Note, "allowPlainHTTP") {
					return true, ""
				}
			}
			return false, "none yet"
		})
		noSecretsLeaked(t, m, ns, []client.Object{p}, ndes.DefaultPassword)
	})
}

// TestNDESPendingApproval: a template that needs a CA manager's approval
// makes NDES answer PENDING; the request polls, is issued once approved, and
// fails with NDES's text once rejected. Polls spend no challenge password.
func TestNDESPendingApproval(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{ManualApproval: true})
	startManager(t)
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	p := ndesProfile(t, ns, "ndes", ndesDynamicSpec(srv, "NTLM", "ndes-agent"), nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

	// waitPending waits until cr is PENDING and has been polled a few times.
	waitPending := func(cr *cmapi.CertificateRequest, polls int) string {
		var tx string
		eventually(t, 30*time.Second, "request "+cr.Name+" PENDING and polled", func() (bool, string) {
			got := getRequest(t, cr)
			ready, desc := readyOf(got)
			if ready != nil && ready.Reason == cmapi.CertificateRequestReasonFailed {
				t.Fatalf("request %s failed while PENDING: %s", cr.Name, desc)
			}
			tx = txOf(t, got)
			ok := ready != nil && ready.Reason == cmapi.CertificateRequestReasonPending && strings.Contains(ready.Message, "answered PENDING") &&
				stateOf(got).Pending && srv.Counters().CertPoll >= polls
			return ok, desc + "; CertPolls " + strconv.Itoa(srv.Counters().CertPoll)
		})
		return tx
	}

	// scep_pending_requests counts the request while the server holds it
	// (Sign updates it before issuer-lib writes the condition waited on).
	pendingGauge := func(want float64) {
		t.Helper()
		if v := testutil.ToFloat64(metrics.Pending.WithLabelValues("SCEPProfile " + ns + "/ndes")); v != want {
			t.Errorf("scep_pending_requests = %v, want %v", v, want)
		}
	}

	cr := ndesRequest(t, ns, p, "approved", 0, "approved")
	tx := waitPending(cr, 3)
	pendingGauge(1)
	if got := srv.PendingTransactions(); len(got) != 1 || got[0] != tx {
		t.Fatalf("pending transactions %v, want [%s]", got, tx)
	}
	if cnt := srv.Counters(); cnt.PasswordsIssued != 1 || cnt.PKCSReq != 1 {
		t.Errorf("after %d CertPolls: passwords issued %d, PKCSReq %d; want 1, 1 (a poll carries no challenge)", cnt.CertPoll, cnt.PasswordsIssued, cnt.PKCSReq)
	}
	srv.ApproveAll()
	issued(t, waitRequest(t, cr, 30*time.Second), srv.CA)
	pendingGauge(0)

	rej := ndesRequest(t, ns, p, "rejected", 1, "rejected")
	polls := srv.Counters().CertPoll
	tx = waitPending(rej, polls+1)
	pendingGauge(1)
	if err := srv.Reject(tx); err != nil {
		t.Fatal(err)
	}
	got := waitRequest(t, rej, 30*time.Second)
	pendingGauge(0)
	ready, desc := readyOf(got)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "0x80094014") || !strings.Contains(ready.Message, "CA manager denied") || !strings.Contains(ready.Message, "badRequest") {
		t.Errorf("rejected request: %s; want Failed with badRequest and NDES's code 0x80094014 in words", desc)
	}
	requestEventSays(t, got, "SCEPRejected", "0x80094014", "CA manager denied")
	if cnt := srv.Counters(); cnt.PKCSReq != 2 {
		t.Errorf("PKCSReq %d, want 2", cnt.PKCSReq)
	}
}

// TestNDESGetOnlyLongRequest: an old NDES without POSTPKIOperation behind
// IIS's default 2048-byte maxQueryString: IIS answers 404.15 before NDES
// sees the request (no PKCSReq, no password used), and the request fails
// saying what to change on the server.
func TestNDESGetOnlyLongRequest(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{GetOnly: true, MaxQueryBytes: ndes.DefaultMaxQueryBytes})
	startManager(t)
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	p := ndesProfile(t, ns, "ndes", ndesDynamicSpec(srv, "NTLM", "ndes-agent"), nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	if caps := strings.Join(p.Status.Capabilities, ","); strings.Contains(caps, "POSTPKIOperation") {
		t.Fatalf("capabilities %s announce POST", caps)
	}

	got := waitRequest(t, ndesRequest(t, ns, p, "long", 0, "long"), 30*time.Second)
	ready, desc := readyOf(got)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "POSTPKIOperation") || !strings.Contains(ready.Message, "maxQueryString") {
		t.Errorf("request: %s; want Failed naming POSTPKIOperation and maxQueryString", desc)
	}
	// IIS refuses before NDES: no PKCSReq read, the one password fetched
	// stays unused. (The same message may reach IIS twice when a second
	// reconcile races the Failed status; both are refused alike.)
	if cnt := srv.Counters(); cnt.PKCSReq != 0 || cnt.PasswordsIssued != 1 || cnt.PasswordsConsumed != 0 || srv.SCEP.Requests("PKIOperation") == 0 {
		t.Errorf("the emulator saw %d PKCSReq, %d passwords issued and %d used, %d PKIOperation requests; want 0, 1, 0 and at least 1 refused by IIS",
			cnt.PKCSReq, cnt.PasswordsIssued, cnt.PasswordsConsumed, srv.SCEP.Requests("PKIOperation"))
	}
}

// TestNDESSubjectRefused: a subject with a character AD CS cannot take
// escaped fails the request before a password is fetched or anything sent.
func TestNDESSubjectRefused(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	srv := startNDES(t, ndes.Options{})
	startManager(t)
	ndesCredentials(t, ns, "ndes-agent", ndesUser, ndes.DefaultPassword)
	p := ndesProfile(t, ns, "ndes", ndesDynamicSpec(srv, "NTLM", "ndes-agent"), nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)

	got := waitRequest(t, ndesRequest(t, ns, p, "plus", 0, "a+b"), 30*time.Second)
	ready, desc := readyOf(got)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "spec.subject") || !strings.Contains(ready.Message, "NDES") || !strings.Contains(ready.Message, "+") {
		t.Errorf("request: %s; want Failed naming spec.subject, NDES and the character", desc)
	}
	if cnt := srv.Counters(); cnt.AdminRequests != 0 || cnt.PasswordsIssued != 0 || cnt.PKCSReq != 0 {
		t.Errorf("admin requests %d, passwords issued %d, PKCSReq %d; want 0 (nothing sent)", cnt.AdminRequests, cnt.PasswordsIssued, cnt.PKCSReq)
	}
	if got.Annotations[signer.AnnotationState] != "" {
		t.Errorf("transaction state written for a refused subject")
	}
}
