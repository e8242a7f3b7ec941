package stack

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/envtest"
)

// RequestLog records every CertificateRequest of one namespace a test's
// cluster ever held, deleted ones too, by the SCEP transaction the
// operator derives from it (the request's UID and key). cert-manager may
// replace a request with a new revision and delete it after the operator
// enrolled it; the log lets a test tell that second PKCSReq from a resend
// without trusting the operator's word: a transaction nobody's request
// derives is one the operator made up.
type RequestLog struct {
	mu   sync.Mutex
	byTx map[string]string // transactionID -> namespace/name (uid), Ready as last seen
}

// WatchRequests starts recording the CertificateRequests of namespace
// until ctx ends. It returns once the watch is established, so every
// request created after it returns is recorded.
func WatchRequests(ctx context.Context, cfg *rest.Config, namespace string) (*RequestLog, error) {
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: envtest.NewScheme()})
	if err != nil {
		return nil, err
	}
	l := &RequestLog{byTx: map[string]string{}}
	w, err := l.listAndWatch(ctx, c, namespace)
	if err != nil {
		return nil, err
	}
	go l.follow(ctx, c, namespace, w)
	return l, nil
}

// listAndWatch records what the namespace holds now and watches from there.
func (l *RequestLog) listAndWatch(ctx context.Context, c client.WithWatch, namespace string) (watch.Interface, error) {
	var list cmapi.CertificateRequestList
	if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing CertificateRequests: %w", err)
	}
	for i := range list.Items {
		l.record(&list.Items[i])
	}
	w, err := c.Watch(ctx, &cmapi.CertificateRequestList{}, client.InNamespace(namespace), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		return nil, fmt.Errorf("watching CertificateRequests: %w", err)
	}
	return w, nil
}

// follow records every request the watch reports, and watches again when
// the API server ends a watch (its timeout, a restart) until ctx ends.
func (l *RequestLog) follow(ctx context.Context, c client.WithWatch, namespace string, w watch.Interface) {
	for {
		for ev := range w.ResultChan() {
			if cr, ok := ev.Object.(*cmapi.CertificateRequest); ok {
				l.record(cr)
			}
		}
		w.Stop()
		for {
			if ctx.Err() != nil {
				return
			}
			var err error
			if w, err = l.listAndWatch(ctx, c, namespace); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (l *RequestLog) record(cr *cmapi.CertificateRequest) {
	tx, err := signer.TransactionIDOf(cr)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ready := "Ready unset"
	for _, c := range cr.Status.Conditions {
		if c.Type == cmapi.CertificateRequestConditionReady {
			ready = fmt.Sprintf("Ready=%s %s", c.Status, c.Reason)
		}
	}
	if cr.DeletionTimestamp != nil {
		ready += ", being deleted"
	}
	l.byTx[string(tx)] = fmt.Sprintf("%s/%s (uid %s, %s)", cr.Namespace, cr.Name, cr.UID, ready)
}

// Request names the request whose transaction tx is, if the log saw it.
func (l *RequestLog) Request(tx string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.byTx[tx]
	return r, ok
}

// ReportExactlyOnce runs ExactlyOnce and reports on t: each problem as an
// error (where names the server), each replaced revision in the log.
func (l *RequestLog) ReportExactlyOnce(t testing.TB, where string, sent map[string]int, current []cmapi.CertificateRequest) {
	t.Helper()
	problems, replaced := l.ExactlyOnce(sent, current)
	for _, p := range problems {
		t.Errorf("at %s: %s", where, p)
	}
	for _, r := range replaced {
		t.Logf("enrolled once, then replaced by cert-manager: %s", r)
	}
}

// ExactlyOnce checks a server's PKCSReqs per transaction against the
// requests: every transaction sent exactly once and derived from a request
// the log saw, and every request in current enrolled. It returns what is
// wrong, and the transactions of requests that are not current (revisions
// cert-manager replaced, each enrolled once), for the test to log.
func (l *RequestLog) ExactlyOnce(sent map[string]int, current []cmapi.CertificateRequest) (problems, replaced []string) {
	for tx, n := range sent {
		req, ok := l.Request(tx)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%d PKCSReq(s) in transaction %q, which no CertificateRequest derives", n, tx))
		case n != 1:
			problems = append(problems, fmt.Sprintf("%d PKCSReqs in the transaction of %s; want 1", n, req))
		}
	}
	isCurrent := map[string]bool{}
	for i := range current {
		cr := &current[i]
		tx, err := signer.TransactionIDOf(cr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s/%s: %v", cr.Namespace, cr.Name, err))
			continue
		}
		isCurrent[string(tx)] = true
		if sent[string(tx)] == 0 {
			problems = append(problems, fmt.Sprintf("%s/%s was never sent in a PKCSReq", cr.Namespace, cr.Name))
		}
	}
	for tx := range sent {
		if req, ok := l.Request(tx); ok && !isCurrent[tx] {
			replaced = append(replaced, req)
		}
	}
	sort.Strings(problems)
	sort.Strings(replaced)
	return problems, replaced
}

// Unfinished names the requests still in flight: neither issued (Ready
// True) nor failed or denied for good. An exactly-once count waits until
// there are none, since cert-manager may make a new revision of a
// Certificate just after its last one was issued (seen once in
// TestHelmInstall: the Certificate Ready from revision 1, revision 2
// created and not yet sent).
func Unfinished(requests []cmapi.CertificateRequest) []string {
	var out []string
	for i := range requests {
		cr := &requests[i]
		switch apiutil.CertificateRequestReadyReason(cr) {
		case cmapi.CertificateRequestReasonIssued, cmapi.CertificateRequestReasonFailed, cmapi.CertificateRequestReasonDenied:
			continue
		}
		if !apiutil.CertificateRequestIsDenied(cr) {
			out = append(out, cr.Namespace+"/"+cr.Name)
		}
	}
	return out
}
