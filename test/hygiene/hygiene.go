// Package hygiene checks that no secret was shown: it reads every value a
// cluster keeps secret (Secrets: challenge passwords, NDES credentials,
// private keys) plus any a test adds (NDES one-time passwords), and searches
// the operator's logs, every Event and the status (and annotations) of every
// SCEPProfile, ClusterSCEPProfile, CertificateRequest and Certificate for
// them. Test packages run it once their tests are done.
package hygiene

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/pemkey"
)

// MinLength is the shortest secret searched for: shorter values (a "1", a
// "true") would be found by chance.
const MinLength = 6

// Secret is one value that must never be shown.
type Secret struct {
	// Where it comes from (namespace/name/key, or what the test says).
	Where string
	// Value is the secret, or for a PEM private key one line of its body.
	Value string
}

// Report is what a sweep searched and what it found.
type Report struct {
	// Secrets is how many values were searched for.
	Secrets int
	// LogBytes, Events and Objects are what was searched.
	LogBytes, Events, Objects int
	// Findings are the places a secret was found; empty is the goal.
	Findings []string
}

// String summarizes the report in one line.
func (r Report) String() string {
	return fmt.Sprintf("searched %d bytes of logs, %d Events and %d objects' status and annotations for %d secret values: %d found",
		r.LogBytes, r.Events, r.Objects, r.Secrets, len(r.Findings))
}

// notSecret are Secret keys whose values are public by design: the issued
// certificate and CA, and user names (messages name the user whose
// credentials were refused, never the password).
var notSecret = map[string]bool{corev1.TLSCertKey: true, "ca.crt": true, "username": true, "user": true}

// SecretsOf returns the secret values of every Secret c can list.
func SecretsOf(ctx context.Context, c client.Reader) ([]Secret, error) {
	var list corev1.SecretList
	if err := c.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing Secrets: %w", err)
	}
	var out []Secret
	for _, s := range list.Items {
		data := map[string][]byte{}
		for k, v := range s.Data {
			data[k] = v
		}
		for k, v := range s.StringData {
			data[k] = []byte(v)
		}
		for k, v := range data {
			if notSecret[k] {
				continue
			}
			out = append(out, valuesOf(s.Namespace+"/"+s.Name+"/"+k, v)...)
		}
	}
	return out, nil
}

// valuesOf splits a Secret value into what to search for: the private
// part of each PEM private key (certificates skipped), or the value itself,
// trimmed.
func valuesOf(where string, v []byte) []Secret {
	var out []Secret
	rest := v
	found := false
	for {
		block, r := pem.Decode(rest)
		if block == nil {
			break
		}
		found, rest = true, r
		if block.Type == "CERTIFICATE" {
			continue
		}
		for _, w := range privateWindows(block) {
			out = append(out, Secret{Where: where + " (" + block.Type + ")", Value: w})
		}
	}
	if found {
		return out
	}
	if s := strings.TrimSpace(string(v)); len(s) >= MinLength {
		out = append(out, Secret{Where: where, Value: s})
	}
	return out
}

// privateWindows returns strings that any text showing the key would
// contain: base64 of 24-byte windows of its private scalars (RSA's private
// exponent and primes, ECDSA's d) at each of the three byte alignments, so a PEM or
// base64 DER copy matches whatever its line breaks. The public half (the
// modulus, the public point) is not searched: certificates and the SCEP
// signer-certificate annotation rightly show it. A key that does not parse
// is searched for by its PEM body lines.
func privateWindows(block *pem.Block) []string {
	var scalars [][]byte
	if k, err := pemkey.Parse(pem.EncodeToMemory(block)); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			scalars = append(scalars, k.D.Bytes())
			for _, p := range k.Primes {
				scalars = append(scalars, p.Bytes())
			}
		case *ecdsa.PrivateKey:
			if d, err := k.Bytes(); err == nil {
				scalars = append(scalars, d)
			}
		}
	}
	var out []string
	if len(scalars) == 0 {
		body := base64.StdEncoding.EncodeToString(block.Bytes)
		for i := 0; i+64 <= len(body); i += 64 {
			out = append(out, body[i:i+64])
		}
		return out
	}
	for _, d := range scalars {
		for off := range 3 {
			for i := off; i+24 <= len(d); i += 24 {
				out = append(out, base64.StdEncoding.EncodeToString(d[i:i+24]))
			}
		}
		out = append(out, hex.EncodeToString(d[:min(len(d), 16)]))
	}
	return out
}

// forms are the ways a secret could appear in text: as is, JSON-escaped,
// and base64-encoded.
func forms(s string) []string {
	out := []string{s}
	if j, err := json.Marshal(s); err == nil {
		if e := string(j[1 : len(j)-1]); e != s {
			out = append(out, e)
		}
	}
	return append(out, base64.StdEncoding.EncodeToString([]byte(s)))
}

// Sweep searches logs, Events and statuses for the cluster's Secrets and
// extra (values no Secret holds, such as NDES one-time passwords). It also
// reports any "PRIVATE KEY" PEM header shown anywhere.
func Sweep(ctx context.Context, c client.Reader, logs string, extra ...Secret) (Report, error) {
	secrets, err := SecretsOf(ctx, c)
	if err != nil {
		return Report{}, err
	}
	for _, e := range extra {
		if len(e.Value) >= MinLength {
			secrets = append(secrets, e)
		}
	}
	r := Report{Secrets: len(secrets), LogBytes: len(logs)}

	texts := map[string]string{"the operator's logs": logs}
	var events corev1.EventList
	if err := c.List(ctx, &events); err != nil {
		return r, fmt.Errorf("listing Events: %w", err)
	}
	for _, e := range events.Items {
		r.Events++
		texts["Event "+e.Namespace+"/"+e.Name] = e.Reason + "\n" + e.Message + "\n" + e.Action
	}
	var newEvents eventsv1.EventList
	if err := c.List(ctx, &newEvents); err == nil {
		for _, e := range newEvents.Items {
			r.Events++
			texts["events.k8s.io Event "+e.Namespace+"/"+e.Name] = e.Reason + "\n" + e.Note + "\n" + e.Action
		}
	}
	add := func(kind string, objs []client.Object, status func(i int) any) error {
		for i, o := range objs {
			b, err := json.Marshal(map[string]any{"status": status(i), "annotations": o.GetAnnotations()})
			if err != nil {
				return err
			}
			r.Objects++
			texts[kind+" "+o.GetNamespace()+"/"+o.GetName()] = string(b)
		}
		return nil
	}
	var profiles scepv1alpha1.SCEPProfileList
	var clusterProfiles scepv1alpha1.ClusterSCEPProfileList
	var requests cmapi.CertificateRequestList
	var certificates cmapi.CertificateList
	for _, l := range []client.ObjectList{&profiles, &clusterProfiles, &requests, &certificates} {
		if err := c.List(ctx, l); err != nil {
			return r, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	var objs []client.Object
	var statuses []any
	for i := range profiles.Items {
		objs, statuses = append(objs, &profiles.Items[i]), append(statuses, profiles.Items[i].Status)
	}
	for i := range clusterProfiles.Items {
		objs, statuses = append(objs, &clusterProfiles.Items[i]), append(statuses, clusterProfiles.Items[i].Status)
	}
	for i := range requests.Items {
		objs, statuses = append(objs, &requests.Items[i]), append(statuses, requests.Items[i].Status.Conditions)
	}
	for i := range certificates.Items {
		objs, statuses = append(objs, &certificates.Items[i]), append(statuses, certificates.Items[i].Status)
	}
	if err := add("object", objs, func(i int) any { return statuses[i] }); err != nil {
		return r, err
	}

	m := newMatcher(secrets)
	for where, text := range texts {
		if strings.Contains(text, "PRIVATE KEY-----") {
			r.Findings = append(r.Findings, fmt.Sprintf("a PEM private key header in %s", where))
		}
		for _, i := range m.find(text) {
			s := secrets[i]
			r.Findings = append(r.Findings, fmt.Sprintf("%s (from %s) in %s", redact(s.Value), s.Where, where))
		}
	}
	return r, nil
}

// redact shows enough of a found secret to tell which, not the secret.
func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + strings.Repeat("*", len(s)-4) + s[len(s)-2:]
}
