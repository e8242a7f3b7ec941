package controllers_test

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// hangingFront passes requests to a SCEP server until hang is set; from
// then on it accepts every request and never answers, as a server whose
// backend is stuck (the client gives up at its timeout, or never if that
// is long). unanswered counts the requests it holds now; pkiOps counts the
// PKIOperations that arrived while hanging.
type hangingFront struct {
	next       http.Handler
	hang       atomic.Bool
	unanswered atomic.Int64
	pkiOps     atomic.Int64
	done       chan struct{}
}

func (f *hangingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.hang.Load() {
		f.next.ServeHTTP(w, r)
		return
	}
	if r.URL.Query().Get("operation") == scepserver.OpPKIOperation {
		f.pkiOps.Add(1)
	}
	f.unanswered.Add(1)
	defer f.unanswered.Add(-1)
	select {
	case <-f.done:
	case <-r.Context().Done():
	}
}

// startHangingFront starts a hangingFront before srv; it stops holding
// requests when the test ends.
func startHangingFront(t *testing.T, srv *scepserver.Server) (*hangingFront, string) {
	t.Helper()
	f := &hangingFront{next: srv, done: make(chan struct{})}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	t.Cleanup(func() { close(f.done) }) // runs first: Close waits for handlers
	return f, hs.URL + "/scep"
}

// TestHangingServerIsolated: one profile's SCEP server that accepts
// connections and never answers (Ready before it hung, so its requests
// reach the signer and its check is under way) delays neither the checks
// nor the enrollments of six other profiles, whether its
// maxConcurrentRequests is the default 4 or the most a tenant may write
// (256, which the operator caps at its per-profile share). The request
// timeout is longer than the test, so nothing relies on it: the hanging
// server still holds unanswered requests when the others are done, and
// never more PKIOperations than the profile's effective limit. How long the others
// took, alone and beside the hanging profile, is logged
// (docs/performance.md), never asserted.
func TestHangingServerIsolated(t *testing.T) {
	parallel(t)
	const (
		healthyProfiles    = 6
		requestsPerProfile = 4
	)
	for _, sc := range []struct {
		name string
		// hangingLimit is the hanging profile's maxConcurrentRequests (0:
		// no hanging profile); inFlight how many of its requests may wait
		// on its server at once; hangingRequests how many it gets.
		hangingLimit, inFlight, hangingRequests int
	}{
		{name: "alone"},
		{name: "beside-a-hanging-profile", hangingLimit: 4, inFlight: 4, hangingRequests: 12},
		{name: "beside-a-hanging-profile-of-256-slots", hangingLimit: 256, inFlight: int(controllers.ProfileShare(controllers.DefaultRequestWorkers)), hangingRequests: 40},
	} {
		t.Run(sc.name, func(t *testing.T) {
			parallel(t)
			ns := namespace(t)
			startManager(t, func(o *controllers.Options) { o.RequestTimeout = 5 * time.Minute })
			c := apiServer(t).Client
			spec := func(url string) scepv1alpha1.SCEPProfileSpec {
				return scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true, URL: url}
			}

			var healthy []*scepv1alpha1.SCEPProfile
			var servers []*scepserver.Server
			for i := range healthyProfiles {
				srv := scepserver.Start(t, scepserver.Behavior{})
				p := &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("healthy-%d", i)}, Spec: spec(srv.URL)}
				if err := c.Create(t.Context(), p); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Delete(context.Background(), p) }) // the next manager would check it
				healthy, servers = append(healthy, p), append(servers, srv)
			}
			var front *hangingFront
			var stuck *scepv1alpha1.SCEPProfile
			var hungAt time.Time
			if sc.hangingLimit > 0 {
				var url string
				front, url = startHangingFront(t, scepserver.Start(t, scepserver.Behavior{}))
				stuck = &scepv1alpha1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hanging"}, Spec: spec(url)}
				stuck.Spec.MaxConcurrentRequests = int32(sc.hangingLimit)
				if err := c.Create(t.Context(), stuck); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = c.Delete(context.Background(), stuck) })
				waitProfile(t, stuck, metav1.ConditionTrue, 30*time.Second)
			}
			lastCheck := time.Time{}
			for _, p := range healthy {
				waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
				lastCheck = maxTime(lastCheck, p.Status.LastCheckTime.Time)
			}

			if stuck != nil {
				// The server hangs; the profile's requests wait on it, as
				// many as its maxConcurrentRequests, and its check too.
				front.hang.Store(true)
				hungAt = time.Now()
				for i := range sc.hangingRequests {
					cr := request(t, ns, fmt.Sprintf("hanging-%d", i), refTo(stuck), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: fmt.Sprintf("hanging-%d", i)}}, rsaKey(2048, i%4)), nil)
					setApproval(t, cr, true)
				}
				askCheck(t, stuck)
				eventually(t, 30*time.Second, "the hanging server to hold its profile's check and PKIOperations", func() (bool, string) {
					n := front.unanswered.Load()
					return n > int64(sc.inFlight), fmt.Sprintf("%d unanswered requests", n)
				})
			}

			// Checks: every healthy profile is checked again.
			// lastCheckTime has a resolution of one second.
			time.Sleep(time.Until(lastCheck.Add(time.Second)))
			start := time.Now()
			for _, p := range healthy {
				askCheck(t, p)
			}
			for _, p := range healthy {
				eventually(t, 60*time.Second, "a new check of "+p.Name, func() (bool, string) {
					if err := c.Get(t.Context(), client.ObjectKeyFromObject(p), p); err != nil {
						return false, err.Error()
					}
					lc := p.Status.LastCheckTime
					return lc != nil && lc.After(lastCheck), "no new check yet"
				})
			}
			checksTook := time.Since(start)

			// Enrollments: every healthy profile issues its requests.
			start = time.Now()
			var crs []*cmapi.CertificateRequest
			for i, p := range healthy {
				for j := range requestsPerProfile {
					name := fmt.Sprintf("%s-%d", p.Name, j)
					cr := request(t, ns, name, refTo(p), csrPEM(t, scep.CSRTemplate{Subject: pkix.Name{CommonName: name}}, rsaKey(2048, (i+j)%4)), nil)
					setApproval(t, cr, true)
					crs = append(crs, cr)
				}
			}
			var wg sync.WaitGroup
			results := make([]*cmapi.CertificateRequest, len(crs))
			for i, cr := range crs {
				wg.Go(func() { results[i] = waitRequestQuietly(t, cr, 2*time.Minute) })
			}
			wg.Wait()
			enrollTook := time.Since(start)
			for i, got := range results {
				if got == nil {
					t.Fatalf("request %s did not finish in 2 minutes", crs[i].Name)
				}
				issued(t, got, servers[i/requestsPerProfile].CA)
			}

			if stuck == nil {
				t.Logf("ISOLATION %s: %d profiles checked again in %s; %d requests issued in %s",
					sc.name, healthyProfiles, checksTook.Round(10*time.Millisecond), len(crs), enrollTook.Round(10*time.Millisecond))
				return
			}
			held := front.unanswered.Load()
			if held == 0 {
				t.Errorf("the hanging server holds no request any more: the test did not measure what it means to")
			}
			var stuckIssued int
			for i := range sc.hangingRequests {
				var cr cmapi.CertificateRequest
				if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("hanging-%d", i)}, &cr); err != nil {
					t.Fatal(err)
				}
				if cond := crCondition(&cr, cmapi.CertificateRequestConditionReady); cond != nil && cond.Status == cmmeta.ConditionTrue {
					stuckIssued++
				}
			}
			if stuckIssued > 0 {
				t.Errorf("%d requests of the hanging profile were issued", stuckIssued)
			}
			// The hanging profile's other requests are held back, not
			// cycled through the workers.
			eventually(t, time.Minute, "the hanging profile's breaker to hold its requests back", func() (bool, string) {
				var list cmapi.CertificateRequestList
				if err := c.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
					return false, err.Error()
				}
				for i := range list.Items {
					cond := crCondition(&list.Items[i], cmapi.CertificateRequestConditionReady)
					if list.Items[i].Spec.IssuerRef.Name == stuck.Name && cond != nil && strings.Contains(cond.Message, "has not answered since") {
						return true, ""
					}
				}
				return false, "no request of the hanging profile says so yet"
			})
			heldBackAfter := time.Since(hungAt)
			if n := front.pkiOps.Load(); n > int64(sc.inFlight) {
				t.Errorf("%d PKIOperations reached the hanging server, more than its effective maxConcurrentRequests (%d)", n, sc.inFlight)
			}
			t.Logf("ISOLATION %s: %d profiles checked again in %s; %d requests issued in %s; the hanging server held %d unanswered requests then (%d PKIOperations received while hanging, for %d requests); its other requests held back %s after it hung",
				sc.name, healthyProfiles, checksTook.Round(10*time.Millisecond), len(crs), enrollTook.Round(10*time.Millisecond), held, front.pkiOps.Load(), sc.hangingRequests, heldBackAfter.Round(100*time.Millisecond))
		})
	}
}

// waitRequestQuietly is waitRequest for a goroutine: nil when cr is
// neither issued nor failed within timeout.
func waitRequestQuietly(t *testing.T, cr *cmapi.CertificateRequest, timeout time.Duration) *cmapi.CertificateRequest {
	got, _ := waitFinished(t, apiServer(t).Client, cr, timeout)
	return got
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
