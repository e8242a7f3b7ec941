/*
Copyright 2026 The scep-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1_test

// These tests run the generated CRDs in a real kube-apiserver: the markers
// in profile_types.go only matter as the OpenAPI schema and CEL rules the
// API server enforces, so that is where they are checked. A profile the
// server accepts must be one the operator can use, and a refusal must name
// the field and say what to change.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/test/envtest"
)

// Example values the cases share.
const (
	ndesURL      = "http://ndes.corp.example/certsrv/mscep/mscep.dll"
	ndesAdminURL = "https://ndes.corp.example/certsrv/mscep_admin/"
	stepCAURL    = "https://ca.example/scep/provisioner"

	// ndesSHA1 is a SHA-1 thumbprint as NDES prints it: groups of eight.
	ndesSHA1 = "sha1:3b6c8a1e 0f2d4c5b 6a7e8f90 1a2b3c4d 5e6f7a8b"
	// opensslSHA256 is a SHA-256 as `openssl x509 -fingerprint -sha256` prints it.
	opensslSHA256 = "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
	// plainSHA256 is the same SHA-256 without separators.
	plainSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	// plainMD5 is an MD5 hash value, as older MDM profiles pin CAs.
	plainMD5 = "d41d8cd98f00b204e9800998ecf8427e"

	// caPEM stands in for a CA bundle: the schema only limits its size, the
	// operator parses it.
	caPEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

	// The messages of the CEL rules, as far as a test needs to recognise them.
	msgUnknownVariable = "unknown %variable%: the known ones are %namespace%, %certificatename%, %requestname%, %username%, %email%, %domainname% and %devicename%"
	msgFingerprint     = "caFingerprint must be 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hex digits"
)

// allVariables uses every %variable% the operator knows.
const allVariables = "%namespace% %certificatename% %requestname% %username% %email% %domainname% %devicename%"

// profileCase is one profile to create and what the API server must say.
type profileCase struct {
	name string
	// cluster creates a ClusterSCEPProfile instead of a SCEPProfile; both
	// kinds share the spec schema, and the cases alternate to prove it.
	cluster bool
	// spec edits a minimal valid spec (minimalSpec) into the case, so
	// that each case breaks exactly one thing.
	spec func(*v1.SCEPProfileSpec)
	// raw edits the spec as JSON before it is sent, for what the Go types
	// cannot express: a missing required field, or a zero value that
	// omitempty would drop (maxAttempts: 0 reaches the server from kubectl,
	// not from the typed client).
	raw func(spec map[string]any)
	// want are substrings the refusal must contain (invalid cases only).
	want []string
	// check inspects the stored object (valid cases only).
	check func(t *testing.T, stored *v1.SCEPProfileSpec)
}

// TestAPIServerValidation creates profiles against the generated CRDs: the
// invalid ones must be refused as Invalid with a message naming the field
// and the fix, the valid ones accepted. One API server serves every case.
func TestAPIServerValidation(t *testing.T) {
	env := envtest.Start(t)
	ns := env.Namespace(t, "validation")

	t.Run("invalid", func(t *testing.T) {
		for i, tc := range append(invalidProfiles(), adcsInvalidProfiles()...) {
			t.Run(tc.name, func(t *testing.T) {
				err := createProfile(t.Context(), env.Client, tc, fmt.Sprintf("invalid-%02d", i), ns)
				if err == nil {
					t.Fatalf("the API server accepted the profile; want it refused with %q", tc.want)
				}
				if !apierrors.IsInvalid(err) {
					t.Fatalf("got %v (reason %q); want an Invalid error", err, apierrors.ReasonForError(err))
				}
				t.Logf("refused: %v", err)
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the refusal does not contain %q:\n%v", w, err)
					}
				}
				// A rule that fails to evaluate still refuses the profile,
				// but says "type conversion error" instead of the fix.
				if strings.Contains(err.Error(), "evaluating rule") {
					t.Errorf("a CEL rule failed to evaluate instead of refusing with its message:\n%v", err)
				}
			})
		}
	})

	t.Run("valid", func(t *testing.T) {
		for i, tc := range append(validProfiles(), adcsValidProfiles()...) {
			t.Run(tc.name, func(t *testing.T) {
				name := fmt.Sprintf("valid-%02d", i)
				if err := createProfile(t.Context(), env.Client, tc, name, ns); err != nil {
					t.Fatalf("the API server refused a valid profile: %v", err)
				}
				if tc.check == nil {
					return
				}
				stored, err := getSpec(t.Context(), env.Client, tc.cluster, name, ns)
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, stored)
			})
		}
	})

	// Edits go through the same rules as creation: kubectl apply of a
	// broken change must not slip past them.
	t.Run("an edit that breaks a stored profile is refused", func(t *testing.T) {
		p := &v1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: "edited", Namespace: ns}, Spec: minimalSpec()}
		if err := env.Client.Create(t.Context(), p); err != nil {
			t.Fatal(err)
		}
		p.Spec.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"}}
		err := env.Client.Update(t.Context(), p)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "set csrMode: Rebuild") {
			t.Fatalf("adding a Static challenge to a Passthrough profile: got %v; want Invalid asking for csrMode: Rebuild", err)
		}
	})
}

// invalidProfiles are the mistakes the API server must refuse, each with
// the words a person needs to fix it.
func invalidProfiles() []profileCase {
	return []profileCase{
		// url
		{
			name: "missing url",
			raw:  func(s map[string]any) { delete(s, "url") },
			want: []string{"spec.url: Required value"},
		},
		{
			name:    "empty url",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.URL = "" },
			want:    []string{"spec.url", "should match"},
		},
		{
			name: "url with an ftp scheme",
			spec: func(s *v1.SCEPProfileSpec) { s.URL = "ftp://ndes.corp.example/certsrv/mscep/mscep.dll" },
			want: []string{"spec.url", "should match"},
		},
		{
			// Credentials in a URL end up in logs and Events; the dynamic
			// challenge has credentialsSecretRef for them.
			name:    "url with userinfo",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.URL = "http://user:pw@ndes.corp.example/certsrv/mscep/mscep.dll" },
			want:    []string{"spec.url", "should match"},
		},
		{
			name: "url with whitespace",
			spec: func(s *v1.SCEPProfileSpec) { s.URL = "http://ndes.corp.example/cert srv/mscep/mscep.dll" },
			want: []string{"spec.url", "should match"},
		},

		// challenge
		{
			name: "Static challenge without passwordSecretRef",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge", "challenge type Static needs passwordSecretRef"},
		},
		{
			name:    "passwordSecretRef with challenge type None",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeNone, PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"}}
			},
			want: []string{"spec.challenge", "passwordSecretRef is only used with challenge type Static"},
		},
		{
			// challenge.type defaults to None, so a lone passwordSecretRef
			// is as unused as one next to an explicit None.
			name: "passwordSecretRef without a challenge type",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"}}
			},
			want: []string{"spec.challenge", "passwordSecretRef is only used with challenge type Static"},
		},
		{
			name: "passwordSecretRef with an empty Secret name",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{}}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.passwordSecretRef.name"},
		},
		{
			name:    "Dynamic challenge without the dynamic block",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge", "challenge type Dynamic needs dynamic"},
		},
		{
			name: "dynamic block with challenge type Static",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{
					Type:              v1.ChallengeStatic,
					PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"},
					Dynamic:           ndesDynamic(),
				}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge", "dynamic is only used with challenge type Dynamic"},
		},
		{
			name:    "dynamic.auth not in the enum",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.Auth = "Digest"
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.dynamic.auth", `Unsupported value: "Digest"`, `"NTLM"`, `"Basic"`},
		},
		{
			name: "dynamic.url with userinfo",
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.URL = "http://CORP%5Cscep:pw@ndes.corp.example/certsrv/mscep_admin/"
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.dynamic.url", "should match"},
		},
		{
			name: "challenge type not in the enum",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: "Intune"}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.type", `Unsupported value: "Intune"`},
		},

		// csrMode
		{
			// Passthrough is the default, so leaving csrMode out is the
			// likely mistake; the message must name the fix.
			name: "Static challenge with the default csrMode Passthrough",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"}}
			},
			want: []string{"spec:", "csrMode Passthrough", "set csrMode: Rebuild"},
		},
		{
			name:    "Dynamic challenge with csrMode Passthrough",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: ndesDynamic()}
				s.CSRMode = v1.CSRModePassthrough
			},
			want: []string{"spec:", "set csrMode: Rebuild"},
		},
		{
			name: "csrMode not in the enum",
			spec: func(s *v1.SCEPProfileSpec) { s.CSRMode = "Rewrite" },
			want: []string{"spec.csrMode", `Unsupported value: "Rewrite"`, `"Passthrough"`, `"Rebuild"`},
		},

		// keys
		{
			name:    "keySize 1024 without allowInsecureKeySize",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.KeySize = 1024 },
			want:    []string{"spec:", "keySize 1024 is refused unless allowInsecureKeySize is true"},
		},
		{
			name: "keySize 1536 not in the enum",
			spec: func(s *v1.SCEPProfileSpec) { s.KeySize = 1536 },
			want: []string{"spec.keySize", "Unsupported value: 1536"},
		},
		{
			name: "keyUsage not in the enum",
			spec: func(s *v1.SCEPProfileSpec) {
				s.KeyUsage = []v1.KeyUsage{v1.KeyUsageDigitalSignature, "CertSign"}
			},
			want: []string{"spec.keyUsage[1]", `Unsupported value: "CertSign"`},
		},

		// caFingerprint
		{
			name:    "caFingerprint of 39 hex digits",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "3b6c8a1e0f2d4c5b6a7e8f901a2b3c4d5e6f7a8" },
			want:    []string{"spec.caFingerprint", msgFingerprint},
		},
		{
			name: "caFingerprint of 48 hex digits",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = plainSHA256[:48] },
			want: []string{"spec.caFingerprint", msgFingerprint},
		},
		{
			name: "caFingerprint with a non-hex digit",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "3b6c8a1e0f2d4c5b6a7e8f901a2b3c4d5e6f7a8g" },
			want: []string{"spec.caFingerprint", msgFingerprint},
		},
		{
			// The operator refuses a prefix that names another hash than the
			// digits' length; the API server must refuse it first.
			name:    "caFingerprint labelled sha1 with the 64 digits of a SHA-256",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "sha1:" + plainSHA256 },
			want:    []string{"spec.caFingerprint", "sha1: takes 40"},
		},
		{
			name: "caFingerprint labelled sha256 with the 32 digits of an MD5",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "sha256:" + plainMD5 },
			want: []string{"spec.caFingerprint", "sha256: takes 64"},
		},
		{
			// An algorithm name is a prefix, not something to drop wherever
			// it appears: the operator cannot read this.
			name: "caFingerprint with an algorithm name in the middle",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = plainSHA256[:32] + "sha256:" + plainSHA256[32:] },
			want: []string{"spec.caFingerprint", msgFingerprint},
		},
		{
			name: "caFingerprints with an entry of 48 hex digits",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprints = []string{plainSHA256, plainSHA256[:48]} },
			want: []string{"spec.caFingerprints[1]", "each caFingerprints entry must be 32 (MD5), 40 (SHA-1) or 64 (SHA-256) hex digits"},
		},
		{
			name:    "caFingerprints entry labelled sha1 with the 64 digits of a SHA-256",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.CAFingerprints = []string{"sha1:" + plainSHA256} },
			want:    []string{"spec.caFingerprints[0]", "sha1: takes 40"},
		},

		// failoverURLs
		{
			name: "failoverURLs with another scheme than url",
			spec: func(s *v1.SCEPProfileSpec) {
				s.FailoverURLs = []string{"https://ndes-2.corp.example/certsrv/mscep/mscep.dll"}
			},
			want: []string{"spec:", "every failoverURLs entry must use the scheme of url"},
		},
		{
			name: "failoverURLs repeating url",
			spec: func(s *v1.SCEPProfileSpec) { s.FailoverURLs = []string{s.URL} },
			want: []string{"spec:", "failoverURLs must not repeat url"},
		},
		{
			name:    "failoverURLs with user:password@",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.FailoverURLs = []string{"http://u:p@ndes-2.corp.example/scep"} },
			want:    []string{"spec.failoverURLs[0]"},
		},

		// %variables%
		{
			name: "unknown variable in subject",
			spec: func(s *v1.SCEPProfileSpec) { s.Subject = "CN=%hostname%.%namespace%,O=Corp" },
			want: []string{"spec.subject", msgUnknownVariable},
		},
		{
			name:    "unknown variable in a SAN value",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.SubjectAltNames = []v1.SubjectAltName{
					{Type: v1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc"},
					{Type: v1.SANTypeRFC822Name, Value: "%mail%"},
				}
			},
			want: []string{"spec.subjectAltNames[1].value", msgUnknownVariable},
		},
		{
			name: "SAN type not in the enum",
			spec: func(s *v1.SCEPProfileSpec) {
				s.SubjectAltNames = []v1.SubjectAltName{{Type: "IPAddress", Value: "10.0.0.1"}}
			},
			want: []string{"spec.subjectAltNames[0].type", `Unsupported value: "IPAddress"`},
		},
		{
			name: "empty SAN value",
			spec: func(s *v1.SCEPProfileSpec) {
				s.SubjectAltNames = []v1.SubjectAltName{{Type: v1.SANTypeDNSName}}
			},
			want: []string{"spec.subjectAltNames[0].value"},
		},

		// attempts and durations
		{
			name: "maxAttempts 0",
			raw:  func(s map[string]any) { s["maxAttempts"] = int64(0) },
			want: []string{"spec.maxAttempts", "should be greater than or equal to 1"},
		},
		{
			name:    "maxAttempts 101",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.MaxAttempts = 101 },
			want:    []string{"spec.maxAttempts", "should be less than or equal to 100"},
		},
		{
			name: "retryInterval 500ms",
			spec: func(s *v1.SCEPProfileSpec) { s.RetryInterval = duration(500 * time.Millisecond) },
			want: []string{"spec.retryInterval", "retryInterval must be at least 1s"},
		},
		{
			// maxRetryInterval defaults to 10m, and the rule sees the default.
			name:    "retryInterval longer than the default maxRetryInterval",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.RetryInterval = duration(time.Hour) },
			want:    []string{"spec:", "retryInterval must not be longer than maxRetryInterval"},
		},
		{
			name: "retryInterval longer than maxRetryInterval",
			spec: func(s *v1.SCEPProfileSpec) {
				s.RetryInterval = duration(2 * time.Minute)
				s.MaxRetryInterval = duration(time.Minute)
			},
			want: []string{"spec:", "retryInterval must not be longer than maxRetryInterval"},
		},
		{
			name: "pendingTimeout 30s",
			spec: func(s *v1.SCEPProfileSpec) { s.PendingTimeout = duration(30 * time.Second) },
			want: []string{"spec.pendingTimeout", "pendingTimeout must be at least 1m"},
		},
		{
			// Stored, "30" (no unit) would break every client that decodes
			// the profile into metav1.Duration, the operator's included.
			name:    "retryInterval without a unit",
			cluster: true,
			raw:     func(s map[string]any) { s["retryInterval"] = "30" },
			want:    []string{"spec.retryInterval", "retryInterval must be a duration such as 30s"},
		},
		{
			name: "maxRetryInterval that is not a duration",
			raw:  func(s map[string]any) { s["maxRetryInterval"] = "ten minutes" },
			want: []string{"spec.maxRetryInterval", "maxRetryInterval must be a duration such as 10m"},
		},
		{
			name: "pendingTimeout in days",
			raw:  func(s map[string]any) { s["pendingTimeout"] = "1d" },
			want: []string{"spec.pendingTimeout", "pendingTimeout must be a duration such as 24h", "no days"},
		},

		// tls
		{
			name: "tls with an http url",
			spec: func(s *v1.SCEPProfileSpec) { s.TLS = &v1.TLSConfig{CABundle: caPEM} },
			want: []string{"spec:", "tls is only used with an https:// url"},
		},
		{
			name:    "tls with both caBundle and caBundleSecretRef",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.URL = stepCAURL
				s.TLS = &v1.TLSConfig{CABundle: caPEM, CABundleSecretRef: &v1.SecretKeySelector{Name: "step-ca-root"}}
			},
			want: []string{"spec.tls", "give one of caBundle, caBundleSecretRef and caBundleConfigMapRef"},
		},
		{
			name:    "tls with both caBundleSecretRef and caBundleConfigMapRef",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.URL = stepCAURL
				s.TLS = &v1.TLSConfig{CABundleSecretRef: &v1.SecretKeySelector{Name: "step-ca-root"}, CABundleConfigMapRef: &v1.ConfigMapKeySelector{Name: "scep-trust"}}
			},
			want: []string{"spec.tls", "give one of caBundle, caBundleSecretRef and caBundleConfigMapRef"},
		},

		// explicit constraints and the tenant boundary
		{
			name: "neither subject nor allowAnySubject",
			spec: func(s *v1.SCEPProfileSpec) { s.Subject = "" },
			want: []string{"spec:", "set subject", "or allowAnySubject: true", "an unconstrained subject must be explicit"},
		},
		{
			name:    "both subject and allowAnySubject",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.AllowAnySubject = true },
			want:    []string{"spec:", "not both"},
		},
		{
			name: "allowAnySubjectAltNames beside subjectAltNames templates",
			spec: func(s *v1.SCEPProfileSpec) {
				s.AllowAnySubjectAltNames = true
				s.SubjectAltNames = []v1.SubjectAltName{{Type: v1.SANTypeDNSName, Value: "%devicename%.svc"}}
			},
			want: []string{"spec:", "allowAnySubjectAltNames: true accepts any alternative name"},
		},
		{
			name: "Static challenge over http without a pin",
			spec: func(s *v1.SCEPProfileSpec) {
				s.CAFingerprint = ""
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password"}}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec:", "a challenge over an http:// url needs caFingerprint", "challenge.allowUnpinnedHTTP"},
		},
		{
			name:    "NDES admin page over http without allowPlainHTTP",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.URL = "http://ndes.corp.example/certsrv/mscep_admin/"
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.dynamic", "exposes its credentials", "allowPlainHTTP: true"},
		},
		{
			name: "dynamic.tls with an http admin url",
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.URL, d.AllowPlainHTTP = "http://ndes.corp.example/certsrv/mscep_admin/", true
				d.TLS = &v1.TLSConfig{CABundle: caPEM}
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
			want: []string{"spec.challenge.dynamic", "dynamic.tls is only used with an https:// admin url"},
		},
		{
			name: "namespaceSelector on a namespaced SCEPProfile",
			spec: func(s *v1.SCEPProfileSpec) { s.NamespaceSelector = &metav1.LabelSelector{} },
			want: []string{"spec.namespaceSelector is for ClusterSCEPProfile"},
		},
		{
			name: "extended key usage that is neither a name nor an OID",
			spec: func(s *v1.SCEPProfileSpec) { s.ExtendedKeyUsages = []string{"ServerAuth", "AnyPurpose"} },
			want: []string{"spec.extendedKeyUsages[1]", "should match"},
		},
		{
			name:    "allowed extension that is not an OID",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.AllowedExtensions = []string{"1.3.6.1.4.1.311.21.10", "subjectDirectoryAttributes"}
			},
			want: []string{"spec.allowedExtensions[1]", "should match"},
		},
		{
			name: "email constraint using %email% itself",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Variables = &v1.VariableConstraints{Email: []string{"%email%"}}
			},
			want: []string{"spec.variables.email[0]", "may use %namespace%, %certificatename% and %domainname% only"},
		},
	}
}

// validProfiles are profiles the API server must accept: the minimal one
// (whose defaults are checked), and the forms people copy from their CA's
// console and MDM documentation.
func validProfiles() []profileCase {
	return []profileCase{
		{
			name: "minimal profile gets the documented defaults",
			check: func(t *testing.T, s *v1.SCEPProfileSpec) {
				want := minimalSpec()
				want.KeySize = 2048
				want.MaxAttempts = 5
				want.RetryInterval = duration(30 * time.Second)
				want.MaxRetryInterval = duration(10 * time.Minute)
				want.PendingTimeout = duration(24 * time.Hour)
				want.Challenge = v1.Challenge{Type: v1.ChallengeNone}
				want.CSRMode = v1.CSRModePassthrough
				got := fmt.Sprintf("%+v", specSummary(s))
				if w := fmt.Sprintf("%+v", specSummary(&want)); got != w {
					t.Errorf("stored spec after defaulting:\n got %s\nwant %s", got, w)
				}
			},
		},
		{
			name:    "minimal cluster profile gets the same defaults",
			cluster: true,
			check: func(t *testing.T, s *v1.SCEPProfileSpec) {
				if s.KeySize != 2048 || s.MaxAttempts != 5 || s.Challenge.Type != v1.ChallengeNone || s.CSRMode != v1.CSRModePassthrough {
					t.Errorf("stored spec after defaulting: %+v", specSummary(s))
				}
			},
		},
		{
			name: "NDES SHA-1 thumbprint in groups of eight",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = ndesSHA1 },
		},
		{
			name:    "upper-case colon-separated SHA-256",
			cluster: true,
			spec:    func(s *v1.SCEPProfileSpec) { s.CAFingerprint = opensslSHA256 },
		},
		{
			name: "SHA-256 labelled SHA-256: in capitals",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "SHA-256: " + opensslSHA256 },
		},
		{
			name: "MD5 of 32 hex digits",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = plainMD5 },
		},
		{
			name: "MD5 labelled md5:",
			spec: func(s *v1.SCEPProfileSpec) { s.CAFingerprint = "md5:" + plainMD5 },
		},
		{
			name:    "every known variable in subject and SAN values",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.Subject = "CN=%certificatename%.%namespace%,OU=%requestname%,UID=%username%,E=%email%,DC=%domainname%,L=%devicename%,O=" + allVariables
				s.SubjectAltNames = []v1.SubjectAltName{
					{Type: v1.SANTypeDNSName, Value: "%certificatename%.%namespace%.svc.%domainname%"},
					{Type: v1.SANTypeDNSName, Value: "*.apps.corp.example"},
					{Type: v1.SANTypeRFC822Name, Value: "%email%"},
					{Type: v1.SANTypeUPN, Value: "%username%@%domainname%"},
					{Type: v1.SANTypeURI, Value: "urn:device:%devicename%:%requestname%:" + allVariables},
				}
				s.KeyUsage = []v1.KeyUsage{v1.KeyUsageDigitalSignature, v1.KeyUsageKeyEncipherment}
			},
		},
		{
			name: "Static challenge with csrMode Rebuild",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "ndes-password", Key: "challenge"}}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name:    "Dynamic NTLM challenge with csrMode Rebuild",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: ndesDynamic()}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name: "Dynamic challenge gets auth NTLM by default",
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.Auth = ""
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
			check: func(t *testing.T, s *v1.SCEPProfileSpec) {
				if s.Challenge.Dynamic == nil || s.Challenge.Dynamic.Auth != "NTLM" {
					t.Errorf("stored challenge: %+v; want dynamic.auth NTLM", s.Challenge.Dynamic)
				}
			},
		},
		{
			name: "https url with tls.caBundle",
			spec: func(s *v1.SCEPProfileSpec) {
				s.URL = stepCAURL
				s.TLS = &v1.TLSConfig{CABundle: caPEM}
			},
		},
		{
			name:    "https url with tls.caBundleSecretRef",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.URL = stepCAURL
				s.TLS = &v1.TLSConfig{CABundleSecretRef: &v1.SecretKeySelector{Name: "step-ca-root"}}
			},
		},
		{
			name: "url with a port, an IPv6 host and a path",
			spec: func(s *v1.SCEPProfileSpec) { s.URL = "http://[fd00::5]:8080/scep" },
		},
		{
			name: "keySize 1024 with allowInsecureKeySize",
			spec: func(s *v1.SCEPProfileSpec) {
				s.KeySize = 1024
				s.AllowInsecureKeySize = true
			},
		},
		{
			name: "retry and timeout bounds",
			spec: func(s *v1.SCEPProfileSpec) {
				s.MaxAttempts = 100
				s.RetryInterval = duration(time.Second)
				s.MaxRetryInterval = duration(time.Second)
				s.PendingTimeout = duration(time.Minute)
			},
		},
		{
			name: "maxAttempts 1",
			spec: func(s *v1.SCEPProfileSpec) { s.MaxAttempts = 1 },
		},
		{
			name: "allowAnySubject and allowAnySubjectAltNames, said explicitly",
			spec: func(s *v1.SCEPProfileSpec) {
				s.Subject, s.AllowAnySubject, s.AllowAnySubjectAltNames = "", true, true
			},
		},
		{
			name:    "Static challenge over http without a pin, the risk accepted",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.CAFingerprint = ""
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "p"}, AllowUnpinnedHTTP: true}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name: "Static challenge over http pinned by caFingerprints alone (old and new CA)",
			spec: func(s *v1.SCEPProfileSpec) {
				s.CAFingerprint = ""
				s.CAFingerprints = []string{"sha256:" + plainSHA256, plainMD5}
				s.Challenge = v1.Challenge{Type: v1.ChallengeStatic, PasswordSecretRef: &v1.SecretKeySelector{Name: "p"}}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name: "two failover servers of the same scheme",
			spec: func(s *v1.SCEPProfileSpec) {
				s.FailoverURLs = []string{"http://ndes-2.corp.example/certsrv/mscep/mscep.dll", "http://ndes-3.corp.example/certsrv/mscep/mscep.dll"}
			},
		},
		{
			name: "NDES admin page over http, the risk accepted",
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.URL, d.AllowPlainHTTP = "http://ndes.corp.example/certsrv/mscep_admin/", true
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name:    "NDES admin page over https with its own trust",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				d := ndesDynamic()
				d.TLS = &v1.TLSConfig{CABundleSecretRef: &v1.SecretKeySelector{Name: "corp-root"}}
				s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
				s.CSRMode = v1.CSRModeRebuild
			},
		},
		{
			name:    "ClusterSCEPProfile limited to labelled namespaces",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"scep": "corp"}}
			},
		},
		{
			name: "extended key usages, allowed extensions and an email constraint",
			spec: func(s *v1.SCEPProfileSpec) {
				s.ExtendedKeyUsages = []string{"ServerAuth", "ClientAuth", "1.3.6.1.5.5.7.3.17"}
				s.AllowedExtensions = []string{"1.3.6.1.4.1.311.21.10"}
				s.Variables = &v1.VariableConstraints{Email: []string{"%namespace%-*@corp.example"}}
			},
		},
	}
}

// minimalSpec is the smallest profile the API server accepts: a URL, a
// subject template (an unconstrained subject must be explicit), and a pin
// (a challenge over http needs one).
func minimalSpec() v1.SCEPProfileSpec {
	return v1.SCEPProfileSpec{URL: ndesURL, CAFingerprint: ndesSHA1, Subject: "CN=%devicename%"}
}

// ndesDynamic is a complete NDES one-time password configuration.
func ndesDynamic() *v1.DynamicChallenge {
	return &v1.DynamicChallenge{
		URL:                  ndesAdminURL,
		Auth:                 "NTLM",
		CredentialsSecretRef: v1.LocalObjectReference{Name: "ndes-admin"},
	}
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// specSummary renders a spec with its durations as text, so that a
// mismatch prints values rather than pointers.
func specSummary(s *v1.SCEPProfileSpec) map[string]any {
	str := func(d *metav1.Duration) string {
		if d == nil {
			return "<nil>"
		}
		return d.Duration.String()
	}
	return map[string]any{
		"url":              s.URL,
		"keySize":          s.KeySize,
		"maxAttempts":      s.MaxAttempts,
		"retryInterval":    str(s.RetryInterval),
		"maxRetryInterval": str(s.MaxRetryInterval),
		"pendingTimeout":   str(s.PendingTimeout),
		"challenge":        fmt.Sprintf("%+v", s.Challenge),
		"csrMode":          s.CSRMode,
	}
}

// createProfile creates tc's profile as name: typed, unless tc.raw needs
// to edit the JSON, then as unstructured with the same content.
func createProfile(ctx context.Context, c client.Client, tc profileCase, name, ns string) error {
	spec := minimalSpec()
	if tc.spec != nil {
		tc.spec(&spec)
	}
	var obj client.Object
	if tc.cluster {
		obj = &v1.ClusterSCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	} else {
		obj = &v1.SCEPProfile{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	}
	if tc.raw == nil {
		return c.Create(ctx, obj)
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	tc.raw(content["spec"].(map[string]any))
	u := &unstructured.Unstructured{Object: content}
	kind := "SCEPProfile"
	if tc.cluster {
		kind = "ClusterSCEPProfile"
	}
	u.SetGroupVersionKind(v1.GroupVersion.WithKind(kind))
	return c.Create(ctx, u)
}

// getSpec reads back the stored spec of a profile createProfile made.
func getSpec(ctx context.Context, c client.Client, cluster bool, name, ns string) (*v1.SCEPProfileSpec, error) {
	if cluster {
		p := &v1.ClusterSCEPProfile{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, p); err != nil {
			return nil, err
		}
		return &p.Spec, nil
	}
	p := &v1.SCEPProfile{}
	if err := c.Get(ctx, client.ObjectKey{Name: name, Namespace: ns}, p); err != nil {
		return nil, err
	}
	return &p.Spec, nil
}
