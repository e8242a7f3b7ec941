package controllers_test

import (
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/test/mitkdc"
	"github.com/scep-operator/scep-operator/test/ndes"
)

// TestNDESKerberos enrolls through a Dynamic challenge whose admin page has
// NTLM turned off and Extended Protection required, with tickets from a
// real MIT KDC: the profile's account logs in with a password (realm and
// KDC from a krb5.conf ConfigMap) or a keytab; a wrong password shows
// CredentialsRejected and nothing else is tried; a KDC that is down is a
// failed attempt the request retries until the KDC is back; clocks too far
// apart are named when the credentials are checked.
func TestNDESKerberos(t *testing.T) {
	kdc := mitkdc.Start(t, mitkdc.Options{})
	kdc.AddUser(t, ndes.DefaultUsername, ndes.DefaultPassword)
	serviceKeytab := kdc.AddService(t, "HTTP/127.0.0.1")
	userKeytab := kdc.Keytab(t, ndes.DefaultUsername)

	ns := namespace(t)
	m := startManager(t)
	c := apiServer(t).Client
	srv := startNDES(t, ndes.Options{TLS: true, Kerberos: &ndes.Kerberos{Keytab: serviceKeytab, NoNTLM: true, ExtendedProtection: "Require"}})
	if err := c.Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "krb5"},
		Data:       map[string]string{"krb5.conf": kdc.Krb5Conf()},
	}); err != nil {
		t.Fatal(err)
	}
	spec := func(secret string, k *scepv1alpha1.KerberosAuth) scepv1alpha1.SCEPProfileSpec {
		s := ndesDynamicSpec(srv, "Kerberos", secret)
		bundle := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.HTTP.Certificate().Raw}))
		s.TLS = &scepv1alpha1.TLSConfig{CABundle: bundle}
		s.Challenge.Dynamic.AllowPlainHTTP = false
		s.Challenge.Dynamic.TLS = &scepv1alpha1.TLSConfig{CABundle: bundle}
		s.Challenge.Dynamic.Kerberos = k
		return s
	}
	secret := func(name string, data map[string][]byte) {
		if err := c.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	byKerberos := func(t *testing.T) {
		t.Helper()
		if got := srv.Counters(); got.LastAuthScheme != "Negotiate (Kerberos)" || got.LastAuthUser != ndes.DefaultDomain+`\`+ndes.DefaultUsername {
			t.Errorf("admin page authenticated %q with %q; want Kerberos", got.LastAuthUser, got.LastAuthScheme)
		}
	}

	t.Run("password, krb5.conf from a ConfigMap", func(t *testing.T) {
		secret("krb-password", map[string][]byte{"username": []byte(ndes.DefaultUsername + "@" + kdc.Realm), "password": []byte(ndes.DefaultPassword)})
		p := ndesProfile(t, ns, "krb-password", spec("krb-password", &scepv1alpha1.KerberosAuth{Krb5ConfConfigMapRef: &scepv1alpha1.ConfigMapKeySelector{Name: "krb5"}}), nil)
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		cr := ndesRequest(t, ns, p, "krb-router", 0, "krb-router")
		got := waitRequest(t, cr, 60*time.Second)
		issued(t, got, srv.CA)
		byKerberos(t)
		noSecretsLeaked(t, m, ns, []client.Object{got, p}, ndes.DefaultPassword)
	})

	t.Run("keytab, realm and KDC in the profile", func(t *testing.T) {
		secret("krb-keytab", map[string][]byte{"username": []byte(ndes.DefaultUsername), "keytab": userKeytab})
		p := ndesProfile(t, ns, "krb-keytab", spec("krb-keytab", &scepv1alpha1.KerberosAuth{Realm: kdc.Realm, KDCs: []string{kdc.Addr}}), nil)
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		got := waitRequest(t, ndesRequest(t, ns, p, "krb-switch", 1, "krb-switch"), 60*time.Second)
		issued(t, got, srv.CA)
		byKerberos(t)
	})

	t.Run("wrong password: CredentialsRejected, nothing else tried", func(t *testing.T) {
		const wrong = "Wr0ng-Passw0rd!"
		secret("krb-wrong", map[string][]byte{"username": []byte(ndes.DefaultUsername), "password": []byte(wrong)})
		k := &scepv1alpha1.KerberosAuth{Realm: kdc.Realm, KDCs: []string{kdc.Addr}, AllowNTLMFallback: true}
		p := ndesProfile(t, ns, "krb-wrong", spec("krb-wrong", k), nil)
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		before := srv.Counters()
		cr := ndesRequest(t, ns, p, "krb-wrong-app", 2, "krb-wrong-app")
		cond := waitProfile(t, p, metav1.ConditionFalse, 30*time.Second)
		if cond.Reason != controllers.ReasonCredentialsRejected || !strings.Contains(cond.Message, "KDC refused") || strings.Contains(cond.Message, wrong) {
			t.Errorf("profile Ready = %s: %s; want CredentialsRejected from the KDC, without the password", cond.Reason, cond.Message)
		}
		ready, desc := readyOf(getRequest(t, cr))
		if ready == nil || ready.Status == cmmeta.ConditionTrue || ready.Reason != cmapi.CertificateRequestReasonPending {
			t.Errorf("request: %s; want Pending", desc)
		}
		after := srv.Counters()
		if after.PasswordsIssued != before.PasswordsIssued || after.AuthChallenges != before.AuthChallenges || after.LastAuthScheme != before.LastAuthScheme {
			t.Errorf("after the KDC refused the password something else reached the admin page: before %+v, after %+v", before, after)
		}
		noSecretsLeaked(t, m, ns, []client.Object{cr, p}, wrong)
	})

	t.Run("clock skew: a clear reason when the credentials are checked", func(t *testing.T) {
		skewed := mitkdc.Start(t, mitkdc.Options{ClockOffset: -2 * time.Hour})
		skewed.AddUser(t, ndes.DefaultUsername, ndes.DefaultPassword)
		secret("krb-skew", map[string][]byte{"username": []byte(ndes.DefaultUsername), "password": []byte(ndes.DefaultPassword)})
		p := ndesProfile(t, ns, "krb-skew", spec("krb-skew", &scepv1alpha1.KerberosAuth{Realm: skewed.Realm, KDCs: []string{skewed.Addr}}),
			map[string]string{controllers.AnnotationValidateCredentials: "1"})
		// The check that validates the credentials says why; the periodic
		// checks after it do not fetch passwords, so it is the Event that
		// stays.
		eventually(t, 30*time.Second, "a Warning Event "+controllers.ReasonKerberosError+" about the clocks", func() (bool, string) {
			evs, err := profileEvents(t, ns, p.Name)
			if err != nil {
				return false, err.Error()
			}
			for _, e := range evs {
				if e.Type == corev1.EventTypeWarning && e.Reason == controllers.ReasonKerberosError && strings.Contains(e.Note, "clock") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d events, none yet", len(evs))
		})
	})

	t.Run("KDC down: retried until it is back", func(t *testing.T) {
		secret("krb-down", map[string][]byte{"username": []byte(ndes.DefaultUsername), "password": []byte(ndes.DefaultPassword)})
		p := ndesProfile(t, ns, "krb-down", spec("krb-down", &scepv1alpha1.KerberosAuth{Realm: kdc.Realm, KDCs: []string{kdc.Addr}}), nil)
		waitProfile(t, p, metav1.ConditionTrue, 30*time.Second)
		kdc.Stop()
		cr := ndesRequest(t, ns, p, "krb-down-app", 3, "krb-down-app")
		eventually(t, 30*time.Second, "a failed attempt naming the KDC", func() (bool, string) {
			_, desc := readyOf(getRequest(t, cr))
			return strings.Contains(desc, "no KDC answered"), desc
		})
		if err := kdc.Start(); err != nil {
			t.Fatal(err)
		}
		issued(t, waitRequest(t, cr, 60*time.Second), srv.CA)
		byKerberos(t)
	})
}
