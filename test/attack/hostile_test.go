package attack

import (
	"bytes"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// maxShownBytes bounds a message or Event note that carries what a server
// said: the server's part is capped well below it.
const maxShownBytes = 1024

// hostileFailInfoText is a failInfoText as a hostile server writes it:
// terminal escapes, a line break to fake a second log line, a text far
// longer than a status should hold, and a marker at its end that a cap
// cuts off.
var hostileFailInfoText = "\x1b[2J\x1b[31mCA COMPROMISED: re-enter your password at http://evil.example\r\nlevel=info msg=\"certificate issued\"\t" +
	strings.Repeat("A", 5000) + "TAIL-MARKER\x00"

// TestHostileServer: a SCEP server is the PKI admin's, or for a
// SCEPProfile the tenant's own, and may be hostile: what it sends is parsed
// with bounds (nesting, sizes) and what it says is capped and cleaned
// before a tenant or an admin reads it in a status or an Event (findings 7
// and 11).
func TestHostileServer(t *testing.T) {
	var stacks *stackWatch
	wellFormed := scepserver.Start(t, scepserver.Behavior{})
	runProfileRows(t, []profileRow{
		{
			name: "control: a well-formed GetCACert turns the profile Ready",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				base, reached := listen(t, "127.0.0.1", wellFormed)
				return tenantProfile(t, "hostile-control", base+"/scep", nil, nil), reached
			},
			want: profileVerdict{ready: true, reached: true},
		},
		{
			name: "GetCACert answered with 1 MiB of nested indefinite-length BER",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				base, reached := listen(t, "127.0.0.1", http.HandlerFunc(nestedBER))
				stacks = watchStacks(t)
				return tenantProfile(t, "hostile-ber", base+"/scep", nil, nil), reached
			},
			want: profileVerdict{reasons: []string{controllers.ReasonUnsupportedServer, controllers.ReasonServerError}, clean: maxShownBytes, reached: true},
			then: func(t *testing.T) {
				// ber2der recursed once per level: 128 MiB of stack for
				// this body before a bound, 256 MiB is the chart's limit.
				if grew := stacks.peak(); grew > 32<<20 {
					t.Errorf("goroutine stacks grew by %d MiB while the operator read the answer; want a bounded nesting depth", grew>>20)
				}
			},
		},
	})

	srv := scepserver.Start(t, scepserver.Behavior{Reject: true})
	p := clusterProfile(t, "attack-hostile", srv, nil)
	refusedWith := func(text string) func(t *testing.T, name string) *cmapi.CertificateRequest {
		return func(t *testing.T, name string) *cmapi.CertificateRequest {
			srv.Set(func(b *scepserver.Behavior) { b.FailInfoText = text })
			return handMade(t, name, p, csrPEM(t, newKey(t), scep.CSRTemplate{Subject: pkix.Name{CommonName: name + "." + tenant}}), nil)
		}
	}
	runRequestRows(t, []*scepserver.Server{srv}, []requestRow{
		{
			name: "control: a server's short failInfoText reaches the request's message",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return refusedWith("denied by the CA manager, ticket 4711")(t, "hostile-control")
			},
			want: verdict{rejected: true, says: []string{"ticket 4711"}, clean: maxShownBytes},
		},
		{
			name: "a failInfoText of 5,000 characters with terminal escapes, a line break and NUL",
			attack: func(t *testing.T) *cmapi.CertificateRequest {
				return refusedWith(hostileFailInfoText)(t, "hostile-fail-info")
			},
			want: verdict{rejected: true, says: []string{"CA COMPROMISED"}, never: []string{"TAIL-MARKER", "\x1b", "\r\n"}, clean: maxShownBytes},
		},
	})
}

// nestedBER answers GetCACaps as a modern server and GetCACert with a
// "certificate bundle" that is 1 MiB of nested indefinite-length
// SEQUENCEs: 30 80 30 80 ...
func nestedBER(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("operation") {
	case scepserver.OpGetCACaps:
		io.WriteString(w, "POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\n")
	case scepserver.OpGetCACert:
		w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
		w.Write(bytes.Repeat([]byte{0x30, 0x80}, 1<<19))
	default:
		http.Error(w, "no", http.StatusBadRequest)
	}
}

// stackWatch samples the process's goroutine stack memory until the test
// ends and reports its growth: the operator runs in this process.
type stackWatch struct {
	mu        sync.Mutex
	base, max uint64
	stop      chan struct{}
	done      chan struct{}
}

var stackMetrics = []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/memory/classes/os-stacks:bytes"}}

func stackBytes() uint64 {
	s := append([]metrics.Sample(nil), stackMetrics...)
	metrics.Read(s)
	var n uint64
	for _, m := range s {
		if m.Value.Kind() == metrics.KindUint64 {
			n += m.Value.Uint64()
		}
	}
	return n
}

func watchStacks(t *testing.T) *stackWatch {
	w := &stackWatch{base: stackBytes(), stop: make(chan struct{}), done: make(chan struct{})}
	w.max = w.base
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
				n := stackBytes()
				w.mu.Lock()
				w.max = max(w.max, n)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *stackWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// peak stops the watch and returns how far stacks grew over the base.
func (w *stackWatch) peak() uint64 {
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max - w.base
}

// TestSignerSecret: the Passthrough signer Secret a profile's check makes
// is made only where no Secret of its name exists: a profile named after
// another application's Secret does not overwrite it, nor take it over
// (its garbage collection with the profile), and says so (finding 12).
func TestSignerSecret(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	runProfileRows(t, []profileRow{
		{
			name: "control: a SCEPProfile whose signer Secret name is free gets its signer Secret",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				return tenantProfile(t, "signer-free", srv.URL, srv.CA, nil), noHost
			},
			want: profileVerdict{ready: true},
			then: func(t *testing.T) {
				var s corev1.Secret
				if err := admin(t).Get(t.Context(), client.ObjectKey{Namespace: tenant, Name: "signer-free-scep-signer"}, &s); err != nil {
					t.Fatal(err)
				}
				if ref := metav1.GetControllerOf(&s); ref == nil || ref.Name != "signer-free" {
					t.Errorf("the signer Secret is not controlled by its profile: %v", ref)
				}
			},
		},
		{
			name: "a SCEPProfile named after another application's Secret (app-scep-signer)",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				app := &corev1.Secret{ObjectMeta: objectMeta(tenant, "app-scep-signer"), StringData: map[string]string{"token": "app-token-5b1c77e0"}}
				create(t, attacker(t), app)
				p := &scepv1alpha1.SCEPProfile{ObjectMeta: objectMeta(tenant, "app")}
				if got := profiles.SignerSecretName(p); got != app.Name {
					t.Fatalf("the profile's signer Secret would be %s, not %s", got, app.Name)
				}
				return tenantProfile(t, "app", srv.URL, srv.CA, nil), noHost
			},
			want: profileVerdict{reasons: []string{"SignerSecretConflict"}, says: []string{"app-scep-signer"}},
			then: func(t *testing.T) {
				var s corev1.Secret
				if err := admin(t).Get(t.Context(), client.ObjectKey{Namespace: tenant, Name: "app-scep-signer"}, &s); err != nil {
					t.Fatal(err)
				}
				if string(s.Data["token"]) != "app-token-5b1c77e0" || len(s.Data) != 1 {
					t.Errorf("the application's Secret was overwritten: keys %v", keysOf(s.Data))
				}
				if len(s.OwnerReferences) > 0 {
					t.Errorf("the application's Secret was taken over: ownerReferences %v", s.OwnerReferences)
				}
			},
		},
	})
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
