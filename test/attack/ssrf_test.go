package attack

import (
	"io"
	"net/http"
	"testing"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/test/scepserver"
)

// reasonDestinationRefused is the Ready reason of a profile whose url the
// egress policy refuses (a controllers constant once the egress policy is
// merged).
const reasonDestinationRefused = "DestinationRefused"

// internalMarker stands for what an internal service would answer the
// operator: it must never come back to the tenant who aimed the operator
// at that service.
const internalMarker = "INTERNAL-3c9f-db_password=hunter2"

// TestSSRF: a namespaced SCEPProfile's url is the tenant's to choose, so
// the operator must not become the tenant's way into the network: no
// address the egress policy refuses is connected to, redirects go only to
// the same scheme and host, and what a server answers is described, never
// reflected, in the profile's status and Events (finding 5).
func TestSSRF(t *testing.T) {
	srv := scepserver.Start(t, scepserver.Behavior{})
	runProfileRows(t, []profileRow{
		{
			name: "control: a SCEPProfile on an allowed address turns Ready (its listener counts the operator's connections)",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				base, reached := listen(t, "127.0.0.1", srv)
				return tenantProfile(t, "ssrf-allowed", base+"/scep", srv.CA, nil), reached
			},
			want: profileVerdict{ready: true, reached: true},
		},
		{
			name: "a SCEPProfile whose url is an address the egress policy denies (" + deniedCIDR + ")",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				base, reached := listen(t, "127.0.0.2", srv)
				return tenantProfile(t, "ssrf-denied", base+"/scep", srv.CA, nil), reached
			},
			want: profileVerdict{reasons: []string{reasonDestinationRefused}, says: []string{"127.0.0.2"}},
		},
		{
			name: "a server that redirects to another host (127.0.0.1 to 127.0.0.2)",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				target, reached := listen(t, "127.0.0.2", srv)
				redirector, _ := listen(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, target+"/scep?"+r.URL.RawQuery, http.StatusFound)
				}))
				return tenantProfile(t, "ssrf-redirect", redirector+"/scep", srv.CA, nil), reached
			},
			want: profileVerdict{reasons: []string{reasonDestinationRefused, controllers.ReasonServerError, controllers.ReasonUnreachable, controllers.ReasonUnsupportedServer}, says: []string{"redirect"}},
		},
		{
			name: "what an internal service answers is not reflected in the profile's status or Events",
			attack: func(t *testing.T) (scepv1alpha1.Profile, func() int64) {
				base, reached := listen(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "text/html")
					w.WriteHeader(http.StatusInternalServerError)
					io.WriteString(w, "<html><body><h1>Internal Server Error</h1><pre>"+internalMarker+"</pre></body></html>")
				}))
				return tenantProfile(t, "ssrf-reflect", base+"/scep", srv.CA, nil), reached
			},
			want: profileVerdict{reasons: []string{controllers.ReasonServerError}, never: []string{internalMarker, "hunter2"}, reached: true},
		},
	})
}
