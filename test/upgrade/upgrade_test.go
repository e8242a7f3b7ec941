// Package upgrade replaces the operator while a request is PENDING at the
// SCEP server: cmd/manager built from the last commit before the
// transaction format (internal/signer's sealed state annotation) last
// changed, and from the working tree, run as child processes with the
// chart's arguments and RBAC against a real API server and cert-manager's
// controllers. Whichever way the replacement goes (old to new, new to old),
// the request finishes with CertPoll once the server approves it, and the
// server sees exactly one PKCSReq.
package upgrade

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/signer"
	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/scepserver"
	"github.com/scep-operator/scep-operator/test/stack"
)

// previous is the last commit before the transaction format changed
// (d330635 added the state's field r; 1291d80 added u). The repository has
// no release tag; when it gets one, the tag before the latest format
// change goes here.
const previous = "1291d807e490f50aac781a3e07bce565128c6dcc"

var (
	st             *stack.Stack
	oldBin, newBin string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "upgrade-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "upgrade:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()

	// The old build runs while the cluster comes up.
	oldDone := make(chan error, 1)
	go func() {
		var err error
		oldBin, err = buildAt(ctx, dir, previous)
		oldDone <- err
	}()
	st, err = stack.Up(ctx, stack.Options{HelmValues: []string{"replicaCount=2"}, NoOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "upgrade:", err)
		<-oldDone
		return 1
	}
	defer st.Down()
	if newBin, err = st.BuildManager(ctx, st.WorkDir); err != nil {
		fmt.Fprintln(os.Stderr, "upgrade:", err)
		<-oldDone
		return 1
	}
	if err := <-oldDone; err != nil {
		fmt.Fprintln(os.Stderr, "upgrade:", err)
		return 1
	}
	return m.Run()
}

// buildAt builds cmd/manager as it was at commit, from `git archive` of
// the repository the test runs in, with the same Go module cache (so it
// builds offline when the cache has the commit's modules). A clone without
// the commit (a shallow one) fails with what to do.
func buildAt(ctx context.Context, dir, commit string) (string, error) {
	root, err := envtest.RootOr("")
	if err != nil {
		return "", err
	}
	has := func() ([]byte, error) {
		return exec.CommandContext(ctx, "git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput()
	}
	out, err := has()
	if err != nil {
		// A shallow clone (CI's may be one) fetches the history from
		// where it was cloned, if that is reachable.
		if shallow, _ := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--is-shallow-repository").Output(); strings.TrimSpace(string(shallow)) == "true" {
			fetchCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			_ = exec.CommandContext(fetchCtx, "git", "-C", root, "fetch", "--quiet", "--unshallow").Run()
			cancel()
			out, err = has()
		}
	}
	if err != nil {
		return "", fmt.Errorf("commit %s (the operator before the last transaction format change) is not in %s (%v %s): the upgrade test needs the repository's history; in a shallow clone run `git fetch --unshallow`", commit, root, err, strings.TrimSpace(string(out)))
	}
	src := filepath.Join(dir, "src-"+commit[:12])
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("extracting %s: %v: %s", commit, err, untarErr.String())
	}
	bin := filepath.Join(dir, "manager-"+commit[:12])
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	build.Dir = src
	// -mod=mod: the old go.sum may lack a line the current toolchain
	// wants; the module cache (or the configured GOPROXY) has the sources.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/manager at %s: %v: %s", commit, err, out)
	}
	return bin, nil
}

// Short leases: the replacement takes the Lease within seconds of the
// predecessor's death.
var fastLease = []string{
	"--leader-election-lease-duration=4s",
	"--leader-election-renew-deadline=3s",
	"--leader-election-retry-period=500ms",
}

// TestUpgradeKeepsPendingTransaction: old operator -> new, while PENDING.
func TestUpgradeKeepsPendingTransaction(t *testing.T) {
	replace(t, "upgrade", oldBin, newBin)
}

// TestDowngradeKeepsPendingTransaction: new operator -> old (a rollback),
// while PENDING.
func TestDowngradeKeepsPendingTransaction(t *testing.T) {
	replace(t, "downgrade", newBin, oldBin)
}

// replace: the server answers PENDING; the first build sends the PKCSReq
// and records PENDING on the request; it is killed (SIGKILL: nothing
// graceful to rely on) and the second build starts; it asks with CertPoll;
// the server approves; the request finishes with one PKCSReq in all.
func replace(t *testing.T, name, firstBin, secondBin string) {
	if err := st.Env.CreateNamespace(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	seen, err := stack.WatchRequests(t.Context(), st.Env.Config, name)
	if err != nil {
		t.Fatal(err)
	}
	srv := scepserver.Start(t, scepserver.Behavior{PendingForever: true})
	p := &scepv1alpha1.ClusterSCEPProfile{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: scepv1alpha1.SCEPProfileSpec{AllowAnySubject: true, AllowAnySubjectAltNames: true,
			URL:           srv.URL,
			RetryInterval: &metav1.Duration{Duration: time.Second},
		},
	}
	if err := st.Client().Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	first := startManager(t, name+"-first", firstBin)
	crt := &cmapi.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: name},
		Spec: cmapi.CertificateSpec{
			SecretName: name + "-tls",
			CommonName: name + ".apps",
			PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.RSAKeyAlgorithm, Size: 2048},
			IssuerRef:  cmmeta.IssuerReference{Group: scepv1alpha1.GroupVersion.Group, Kind: "ClusterSCEPProfile", Name: name},
		},
	}
	if err := st.Client().Create(t.Context(), crt); err != nil {
		t.Fatal(err)
	}

	var cr cmapi.CertificateRequest
	eventually(t, 90*time.Second, "the first build's PENDING on the request", func() (bool, string) {
		crs := requestsIn(t, name)
		if len(crs) != 1 {
			return false, fmt.Sprintf("%d requests", len(crs))
		}
		cr = crs[0]
		state, ok := signer.StateOf(&cr)
		return ok && state.Pending && srv.PKCSReqs() >= 1, fmt.Sprintf("state %+v (readable %v), %d PKCSReq", state, ok, srv.PKCSReqs())
	})
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	polls := srv.PKIMessages("CertPoll")
	t.Logf("%s killed at %s while PENDING (%d CertPolls so far); state annotation %s", first.Name, killed.Format("15:04:05.000"), polls, cr.Annotations[signer.AnnotationState])
	// What the server received, and when, against the kill: whose message
	// each was (a flake once counted a second PKCSReq).
	defer func() {
		if t.Failed() {
			for _, r := range srv.PKIRequests() {
				t.Logf("server: %s", r)
			}
		}
	}()
	// What the first build sent before it was replaced. The build under
	// test sends one PKCSReq. The previous release (before a9572bc) sends
	// the PKCSReq again when recording its PENDING answer conflicted with
	// another write, which a loaded machine provokes (seen in a hunt run:
	// "the object has been modified", then a second PKCSReq in the same
	// transaction): its own bug, fixed since, and not the upgrade's. What
	// the upgrade must keep is the transaction: the second build sends no
	// PKCSReq, only CertPolls.
	sentByFirst, pkcsReqs := srv.PKCSReqTransactions(), srv.PKCSReqs()
	switch {
	case len(sentByFirst) != 1:
		t.Fatalf("the first build sent PKCSReqs in %d transactions, want 1: %v", len(sentByFirst), sentByFirst)
	case firstBin == newBin && pkcsReqs != 1:
		t.Fatalf("the build under test sent %d PKCSReqs before it was replaced, want 1", pkcsReqs)
	case pkcsReqs != 1:
		t.Logf("the previous release sent %d PKCSReqs in its transaction before it was replaced (its conflict resend, fixed by a9572bc)", pkcsReqs)
	}

	second := startManager(t, name+"-second", secondBin)
	eventually(t, 90*time.Second, "the second build's CertPoll", func() (bool, string) {
		n := srv.PKIMessages("CertPoll")
		return n > polls, fmt.Sprintf("%d CertPolls, %d PKCSReq; %s", n, srv.PKCSReqs(), tail(second.Logs()))
	})
	txs := srv.PendingTransactions()
	if len(txs) != 1 {
		t.Fatalf("the server has %d pending transactions, want 1: %q", len(txs), txs)
	}
	if err := srv.Approve(txs[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the Certificate Ready", func() (bool, string) {
		var got cmapi.Certificate
		if err := st.Client().Get(t.Context(), client.ObjectKeyFromObject(crt), &got); err != nil {
			return false, err.Error()
		}
		return stack.IsReady(&got), stack.ReadyMessage(&got)
	})
	// One PKCSReq per transaction, each of a request the namespace held:
	// the second build must poll the first one's transaction, not enroll
	// it again (a revision cert-manager made would be a transaction of its
	// own, and is told apart).
	sent := srv.PKCSReqTransactions()
	for tx, before := range sentByFirst {
		if sent[tx] > before {
			t.Errorf("the second build sent %d PKCSReq(s) in transaction %s after the replacement, want none: it must poll", sent[tx]-before, tx)
		}
		sent[tx] = min(sent[tx], 1) // the previous release's own resend is reported above
	}
	seen.ReportExactlyOnce(t, "the SCEP server", sent, requestsIn(t, name))
	if n := len(srv.Issued()); n != 1 {
		t.Errorf("the server issued %d certificates, want 1", n)
	}
	if n := len(requestsIn(t, name)); n != 1 {
		t.Errorf("cert-manager made %d requests, want 1 (the first never failed)", n)
	}
}

// startManager starts bin with the chart's arguments; it is killed, and
// its logs checked for panics and RBAC refusals, when the test ends.
func startManager(t *testing.T, name, bin string) *stack.ManagerProcess {
	t.Helper()
	p, err := st.StartManagerProcess(t.Context(), bin, name, fastLease...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		// Either build reading the other's state must not crash, nor
		// need what the chart does not grant.
		logs := p.Logs()
		switch {
		case strings.Contains(logs, "panic") || strings.Contains(logs, "is forbidden"):
			t.Errorf("%s panicked or was refused by RBAC; its logs:\n%s", p.Name, logs)
		case t.Failed():
			t.Logf("logs of %s:\n%s", p.Name, logs)
		}
	})
	return p
}

// requestsIn returns the CertificateRequests of namespace ns.
func requestsIn(t *testing.T, ns string) []cmapi.CertificateRequest {
	t.Helper()
	var list cmapi.CertificateRequestList
	if err := st.Client().List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// eventually waits until cond holds, failing with its last message after
// timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		ok, msg := cond()
		last = msg
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting %s for %s: %s", timeout, what, last)
	}
}

func tail(logs string) string {
	lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-3):], "\n")
}
