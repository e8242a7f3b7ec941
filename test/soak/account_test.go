//go:build soak

package soak

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	"github.com/scep-operator/scep-operator/test/procstatus"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

// sample is one reading of a manager process.
type sample struct {
	process    string // name#start
	at         time.Duration
	age        time.Duration // since the process started
	leader     bool          // it had acquired the Lease
	rssKiB     int
	goroutines int
	// heapKiB is the Go heap in use (go_memstats_heap_inuse_bytes): what
	// the process holds, without what the runtime keeps mapped.
	heapKiB int
}

// sample reads every live manager's RSS and goroutines every 5 s.
func (h *harness) sample(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for name, slot := range h.snapshotManagers() {
			if exited, _ := slot.proc.Exited(); exited {
				continue
			}
			rss := procstatus.RSS(slot.proc.PID())
			m := readMetrics(ctx, slot.metricsPort)
			if rss == 0 || m.goroutines == 0 {
				continue
			}
			h.mu.Lock()
			h.samples = append(h.samples, sample{
				process: fmt.Sprintf("%s#%d", name, slot.starts), at: time.Since(h.start), age: time.Since(slot.startedAt),
				leader: strings.Contains(slot.proc.Logs(), "Successfully acquired lease"), rssKiB: rss, goroutines: m.goroutines, heapKiB: m.heapKiB,
			})
			h.mu.Unlock()
		}
	}
}

// processMetrics is what the sampler reads from a manager's /metrics.
type processMetrics struct {
	goroutines, heapKiB int
}

func readMetrics(ctx context.Context, port int) processMetrics {
	var m processMetrics
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	value := func(line, name string) (int, bool) {
		v, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			return 0, false
		}
		f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
		return int(f), true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := value(line, "go_goroutines"); ok {
			m.goroutines = v
		} else if v, ok := value(line, "go_memstats_heap_inuse_bytes"); ok {
			m.heapKiB = v / 1024
		}
	}
	return m
}

// waitAllReady waits until every Certificate is Ready and not issuing.
func (h *harness) waitAllReady(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		var list cmapi.CertificateList
		err := h.st.Client().List(ctx, &list)
		var stuck []string
		if err == nil {
			for _, crt := range list.Items {
				if crt.DeletionTimestamp == nil && (!stack.IsReady(&crt) || issuing(&crt)) {
					stuck = append(stuck, crt.Namespace+"/"+crt.Name+": "+stack.ReadyMessage(&crt))
				}
			}
			if len(stuck) == 0 {
				h.logf("soak: all %d Certificates Ready", len(list.Items))
				return
			}
		}
		if time.Now().After(deadline) {
			sort.Strings(stuck)
			h.t.Errorf("after %s, %d Certificates are not Ready (list error %v):\n  %s", timeout, len(stuck), err, strings.Join(stuck, "\n  "))
			for name, slot := range h.snapshotManagers() {
				h.t.Logf("last logs of manager %s:\n%s", name, tailLines(slot.proc.Logs(), 40))
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// account compares the servers' records with the cluster's requests and
// reports the run.
func (h *harness) account(ctx context.Context) {
	t := h.t
	var crs cmapi.CertificateRequestList
	if err := h.st.Client().List(ctx, &crs); err != nil {
		t.Fatal(err)
	}
	perIssuer := map[string]int{}
	for _, cr := range crs.Items {
		perIssuer[cr.Spec.IssuerRef.Name]++
	}
	h.mu.Lock()
	t.Logf("soak: %s; Certificates created %d, renewed %d, deleted %d; CertificateRequests %d", *duration, h.created, h.renewed, h.deleted, len(crs.Items))
	var kinds []string
	for k, n := range h.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	t.Logf("soak: faults injected: %s", strings.Join(kinds, ", "))
	h.mu.Unlock()

	for _, srv := range h.servers {
		sends := sendsOf(srv.proxy.Exchanges())
		t.Logf("soak: %s: %d requests left (cert-manager deletes superseded ones); the proxy passed %s", srv.name, perIssuer[srv.name], sends.summary())
		if srv.records != nil {
			h.accountCertPoll(srv)
			continue
		}
		if srv.issued != nil {
			issued := srv.issued()
			t.Logf("soak: %s: its depot holds %d certificates for %d keys", srv.name, len(issued), len(countKeys(issued)))
		}
		dups := sends.duplicates()
		t.Logf("soak: %s: %d transactions issued more than once (%d certificates beyond one per CertificateRequest); %d answers lost after the server had the request", srv.name, len(dups), countBeyond(dups), srv.proxy.LostAnswers())
		h.explainLost(srv.name, dups)
	}
	h.reportMemory()
}

// reportMemory reports the managers' RSS and goroutines. The leader exits
// whenever kube-apiserver is away longer than its renew deadline, so few
// processes live long: each one that lived longLived gets its slopes (over
// its life and after warmUp); and every process that led gets one point,
// its first reading as leader at ageMark of age or more, whose slope over the run says
// whether what a new leader needs grows as the soak goes on.
func (h *harness) reportMemory() {
	h.mu.Lock()
	defer h.mu.Unlock()
	byProcess := map[string][]sample{}
	for _, s := range h.samples {
		byProcess[s.process] = append(byProcess[s.process], s)
	}
	var names []string
	for n := range byProcess {
		names = append(names, n)
	}
	sort.Strings(names)
	rss := func(s sample) float64 { return float64(s.rssKiB) }
	gor := func(s sample) float64 { return float64(s.goroutines) }
	var atAge []sample
	short := 0
	for _, n := range names {
		ss := byProcess[n]
		for _, x := range ss {
			if x.leader && x.age >= ageMark {
				atAge = append(atAge, x)
				break
			}
		}
		span := ss[len(ss)-1].at - ss[0].at
		if span < longLived {
			short++
			continue
		}
		// Slopes over the process's life, after its warm-up, and once the
		// records the signer keeps for an hour have begun to expire: what
		// still grows then is not those records.
		windows := fmt.Sprintf("RSS %d -> %d KiB, Go heap in use %d -> %d KiB, goroutines %d -> %d; over its life: %s",
			ss[0].rssKiB, ss[len(ss)-1].rssKiB, ss[0].heapKiB, ss[len(ss)-1].heapKiB, ss[0].goroutines, ss[len(ss)-1].goroutines, slopes(ss))
		for _, from := range []time.Duration{warmUp, recordsKept + warmUp} {
			var late []sample
			for _, x := range ss {
				if x.age >= from {
					late = append(late, x)
				}
			}
			if len(late) >= 6 {
				windows += fmt.Sprintf("; after its first %s: %s", from, slopes(late))
			}
		}
		h.t.Logf("soak: manager %s over %s (leader at the end: %v): %s", n, span.Round(time.Second), ss[len(ss)-1].leader, windows)
	}
	h.t.Logf("soak: %d of %d manager processes lived less than %s", short, len(names), longLived)
	if len(atAge) >= 3 {
		sort.Slice(atAge, func(i, j int) bool { return atAge[i].at < atAge[j].at })
		first, last := atAge[0], atAge[len(atAge)-1]
		h.t.Logf("soak: %d leaders at %s of age, from %s to %s into the run: RSS %d -> %d KiB (%.0f KiB/min), goroutines %d -> %d (%.2f/min)",
			len(atAge), ageMark, first.at.Round(time.Second), last.at.Round(time.Second), first.rssKiB, last.rssKiB, slope(atAge, rss), first.goroutines, last.goroutines, slope(atAge, gor))
	}
}

// longLived is how long a manager must have lived for its own slopes.
const longLived = 4 * time.Minute

// ageMark is the age at which every leader is read once: most leaders live
// a few minutes (the soak stops kube-apiserver every minute or two).
const ageMark = time.Minute

// warmUp is the start of a manager's life (caches fill, workers start)
// that its settled slopes leave out.
const warmUp = 2 * time.Minute

// recordsKept is how long internal/signer remembers what it sent and which
// requests it wrote (touchedFor there).
const recordsKept = time.Hour

// slopes formats the RSS, heap and goroutine slopes of ss.
func slopes(ss []sample) string {
	return fmt.Sprintf("RSS %.0f KiB/min, heap %.0f KiB/min, goroutines %.2f/min",
		slope(ss, func(s sample) float64 { return float64(s.rssKiB) }),
		slope(ss, func(s sample) float64 { return float64(s.heapKiB) }),
		slope(ss, func(s sample) float64 { return float64(s.goroutines) }))
}

// slope is the least-squares slope of v over time, per minute.
func slope(ss []sample, v func(sample) float64) float64 {
	var sx, sy, sxx, sxy float64
	for _, s := range ss {
		x := s.at.Minutes()
		y := v(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(ss))
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}

// spkiOf is the hex SHA-256 of a public key (a certificate's or a CSR's
// RawSubjectPublicKeyInfo).
func spkiOf(rawSPKI []byte) string {
	sum := sha256.Sum256(rawSPKI)
	return hex.EncodeToString(sum[:])
}

// keysOf lists the key (spkiOf) of each certificate.
func keysOf(certs []*x509.Certificate) []string {
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, spkiOf(c.RawSubjectPublicKeyInfo))
	}
	return out
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// accountCertPoll checks a server that answers CertPoll against its own
// records: exactly one certificate per transaction (one transaction is one
// CertificateRequest: the operator derives its transactionID from the
// request's UID and key), and nothing left pending.
func (h *harness) accountCertPoll(srv *server) {
	t := h.t
	bySPKI := countKeys(srv.issued())
	issued := 0
	for _, n := range bySPKI {
		issued += n
	}
	pending := 0
	if srv.name == "ndes" {
		pending = len(h.ndes.PendingTransactions())
	}
	t.Logf("soak: %s: its records: %d PKCSReq, %d CertPoll, %d certificates issued for %d keys, %d transactions still pending",
		srv.name, srv.records.PKIMessages("PKCSReq"), srv.records.PKIMessages("CertPoll"), issued, len(bySPKI), pending)
	if beyond := h.explainDuplicates(srv.records, bySPKI); beyond > 0 {
		t.Errorf("%s answers CertPoll, yet issued %d certificates beyond one per transaction", srv.name, beyond)
	}
}

// countKeys counts the certificates issued per key.
func countKeys(keys []string) map[string]int {
	out := map[string]int{}
	for _, k := range keys {
		out[k]++
	}
	return out
}

// explainDuplicates prints, for each key a CertPoll server issued more
// than once, the messages of its transactions, and returns how many
// certificates were issued beyond one per transaction.
func (h *harness) explainDuplicates(records *scepserver.Server, bySPKI map[string]int) int {
	txOfKey := map[string]map[string]bool{}
	msgs := map[string][]string{}
	for _, r := range records.PKIRequests() {
		msgs[r.TransactionID] = append(msgs[r.TransactionID], r.MessageType)
		if r.CSR != nil {
			k := spkiOf(r.CSR.RawSubjectPublicKeyInfo)
			if txOfKey[k] == nil {
				txOfKey[k] = map[string]bool{}
			}
			txOfKey[k][r.TransactionID] = true
		}
	}
	beyond := 0
	for k, n := range bySPKI {
		if n < 2 {
			continue
		}
		var txs []string
		for tx := range txOfKey[k] {
			txs = append(txs, fmt.Sprintf("%s…: %s", tx[:12], strings.Join(msgs[tx], " ")))
		}
		sort.Strings(txs)
		h.t.Logf("soak: key %s… issued %d times, transactions:\n  %s", k[:12], n, strings.Join(txs, "\n  "))
		if extra := n - len(txOfKey[k]); extra > 0 {
			beyond += extra
		}
	}
	return beyond
}
