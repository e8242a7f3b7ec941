package controllers_test

import (
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// failoverProfile creates a profile with url and failoverURLs and waits for
// its first check.
func failoverProfile(t *testing.T, ns, name string, urls []string, change func(*scepv1alpha1.SCEPProfileSpec)) *scepv1alpha1.SCEPProfile {
	t.Helper()
	p := &scepv1alpha1.SCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: urls[0], FailoverURLs: urls[1:],
			RetryInterval: duration(time.Second), MaxRetryInterval: duration(2 * time.Second)},
	}
	if change != nil {
		change(&p.Spec)
	}
	if err := apiServer(t).Client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFailoverToSecondServer: with url down, the profile stays Ready on its
// failover server and says which server is down (status.servers, the Ready
// message); a request is issued by the second server, and the PKCSReq's
// server is sealed into the request's state.
func TestFailoverToSecondServer(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	second := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	dead := scepserver.DeadURL(t)
	p := failoverProfile(t, ns, "two", []string{dead, second.URL}, nil)
	cond := waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	if !strings.Contains(cond.Message, second.URL+" answered") || !strings.Contains(cond.Message, dead) {
		t.Errorf("Ready message %q does not say which server answered and which did not", cond.Message)
	}
	if s := p.Status.Servers; len(s) != 2 || s[0].URL != dead || s[0].Ready || s[0].Reason == "" || !s[1].Ready || len(s[1].Capabilities) == 0 {
		t.Fatalf("status.servers = %+v, want url down with a reason, the failover up with its capabilities", s)
	}
	key := profiles.KeyOf(p).String()
	before := testutil.ToFloat64(metrics.Failovers.WithLabelValues(key, dead))

	cr := waitRequest(t, approvedRequest(t, p, "via-second", 0), 60*time.Second)
	issued(t, cr, second.CA)
	if got := stateOf(cr).Server; got != second.URL {
		t.Errorf("state.server = %q, want %q", got, second.URL)
	}
	if n := second.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the second server saw %d PKCSReq, want 1", n)
	}
	if up := testutil.ToFloat64(metrics.ServerUp.WithLabelValues(key, dead)); up != 0 {
		t.Errorf("scep_server_up{server=%s} = %v, want 0", dead, up)
	}
	if up := testutil.ToFloat64(metrics.ServerUp.WithLabelValues(key, second.URL)); up != 1 {
		t.Errorf("scep_server_up{server=second} = %v, want 1", up)
	}
	// Found down by the check, url is tried last: no request moved on.
	if got := testutil.ToFloat64(metrics.Failovers.WithLabelValues(key, dead)); got != before {
		t.Errorf("scep_server_failovers_total{server=url} went from %v to %v; the server found down should be tried last", before, got)
	}
}

// TestFailoverFirstAnswers5xx: url answers HTTP 503 to the PKCSReq (its
// check passed): the request moves on to the next server in the same
// attempt, with an Event saying so.
func TestFailoverFirstAnswers5xx(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	first := scepserver.Start(t, scepserver.Behavior{})
	second := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	p := failoverProfile(t, ns, "five-oh-three", []string{first.URL, second.URL}, nil)
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	first.Set(func(b *scepserver.Behavior) {
		b.Status, b.FaultOperations = 503, []string{scepserver.OpPKIOperation}
	})
	cr := waitRequest(t, approvedRequest(t, p, "moved-on", 0), 60*time.Second)
	issued(t, cr, second.CA)
	// (A request created in the manager's first second may be asked about
	// with a CertPoll first: it could predate this process's lead.)
	if n := first.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("url got %d PKCSReq, want the one it refused", n)
	}
	if n := second.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("the failover server got %d PKCSReq, want 1", n)
	}
	if st := stateOf(cr); st.FailedAttempts != 0 || st.Server != second.URL {
		t.Errorf("state = %+v, want no failed attempt and the second server", st)
	}
}

// TestPendingStaysWithItsServer: a PENDING transaction's server goes down;
// its CertPolls keep going there (failing, counted), the other server is
// never sent anything for it; when the server is back and the CA manager
// approves, the request is issued by it.
func TestPendingStaysWithItsServer(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	first := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	second := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	p := failoverProfile(t, ns, "pinned", []string{first.URL, second.URL}, func(s *scepv1alpha1.SCEPProfileSpec) { s.MaxAttempts = 50 })
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	cr := approvedRequest(t, p, "pending", 0)
	c := apiServer(t).Client
	eventually(t, 30*time.Second, "the request to be PENDING at the first server", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), cr); err != nil {
			return false, err.Error()
		}
		st := stateOf(cr)
		return st.Pending && st.Server == first.URL, "state " + st.LastError
	})
	first.Set(func(b *scepserver.Behavior) { b.Status = 503 })
	polls := first.Requests(scepserver.OpPKIOperation)
	eventually(t, 30*time.Second, "CertPolls to fail at the first server", func() (bool, string) {
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(cr), cr); err != nil {
			return false, err.Error()
		}
		return stateOf(cr).FailedAttempts >= 2 && first.Requests(scepserver.OpPKIOperation) >= polls+2, stateOf(cr).LastError
	})
	if n := second.Requests(scepserver.OpPKIOperation); n != 0 {
		t.Fatalf("the failover server got %d PKIOperations for a transaction PENDING at url", n)
	}
	first.Set(func(b *scepserver.Behavior) { b.Status = 0 })
	if err := first.Approve(txOf(t, cr)); err != nil {
		t.Fatal(err)
	}
	issued(t, waitRequest(t, cr, 60*time.Second), first.CA)
	if n := first.PKIMessages("PKCSReq"); n != 1 {
		t.Errorf("url saw %d PKCSReq, want 1", n)
	}
	if n := second.Requests(scepserver.OpPKIOperation); n != 0 {
		t.Errorf("the failover server got %d PKIOperations", n)
	}
}

// TestAllServersDown: with every server down, each attempt tries them all
// and counts once, and the request fails after maxAttempts, as with one.
func TestAllServersDown(t *testing.T) {
	parallel(t)
	ns := namespace(t)
	up := scepserver.Start(t, scepserver.Behavior{})
	startManager(t)
	a, b := scepserver.DeadURL(t), scepserver.DeadURL(t)
	p := failoverProfile(t, ns, "none", []string{up.URL, a, b}, func(s *scepv1alpha1.SCEPProfileSpec) { s.MaxAttempts = 2 })
	waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
	// url goes down after the check: the request finds it down first.
	up.Set(func(bh *scepserver.Behavior) { bh.Status = 503 })
	cr := waitRequest(t, approvedRequest(t, p, "doomed", 0), 90*time.Second)
	ready := crCondition(cr, cmapi.CertificateRequestConditionReady)
	if ready.Reason != cmapi.CertificateRequestReasonFailed || !strings.Contains(ready.Message, "failed 2 times (maxAttempts)") {
		t.Fatalf("Ready = %s: %s; want Failed after 2 attempts", ready.Reason, ready.Message)
	}
}
