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

import (
	"testing"

	v1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// The cases of the AD CS fields (adcs_types.go, certificateTemplate,
// cryptoFloor), run by TestAPIServerValidation.

// kerberosDynamic is a Dynamic challenge with auth Kerberos.
func kerberosDynamic(k *v1.KerberosAuth) func(*v1.SCEPProfileSpec) {
	return func(s *v1.SCEPProfileSpec) {
		d := ndesDynamic()
		d.Auth = "Kerberos"
		d.Kerberos = k
		s.Challenge = v1.Challenge{Type: v1.ChallengeDynamic, Dynamic: d}
		s.CSRMode = v1.CSRModeRebuild
	}
}

func adcsInvalidProfiles() []profileCase {
	return []profileCase{
		{
			name: "auth Kerberos without kerberos",
			spec: kerberosDynamic(nil),
			want: []string{"spec.challenge.dynamic", "auth Kerberos needs kerberos"},
		},
		{
			name:    "kerberos with auth NTLM",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				kerberosDynamic(&v1.KerberosAuth{KDCs: []string{"dc1.corp.example"}})(s)
				s.Challenge.Dynamic.Auth = "NTLM"
			},
			want: []string{"spec.challenge.dynamic", "kerberos is only used with auth: Kerberos"},
		},
		{
			name: "kerberos without KDCs or krb5.conf",
			spec: kerberosDynamic(&v1.KerberosAuth{Realm: "CORP.EXAMPLE"}),
			want: []string{"spec.challenge.dynamic.kerberos", "kerberos needs kdcs"},
		},
		{
			name: "a KDC that is a URL",
			spec: kerberosDynamic(&v1.KerberosAuth{KDCs: []string{"tcp://dc1.corp.example:88"}}),
			want: []string{"spec.challenge.dynamic.kerberos.kdcs[0]"},
		},
		{
			name: "certificateTemplate with csrMode Passthrough",
			spec: func(s *v1.SCEPProfileSpec) { s.CertificateTemplate = "WebServer-K8s" },
			want: []string{"certificateTemplate is written into the CSR", "csrMode: Rebuild"},
		},
		{
			name:    "certificateTemplate that is not a template name",
			cluster: true,
			spec: func(s *v1.SCEPProfileSpec) {
				s.CSRMode = v1.CSRModeRebuild
				s.CertificateTemplate = "Web/Server"
			},
			want: []string{"spec.certificateTemplate"},
		},
		{
			name: "allowedExtensions letting a request name its template",
			spec: func(s *v1.SCEPProfileSpec) { s.AllowedExtensions = []string{"1.2.3.4", "1.3.6.1.4.1.311.21.7"} },
			want: []string{"spec.allowedExtensions", "a request must not choose its template", "certificateTemplate"},
		},
		{
			name: "a content encryption floor that is not a SCEP cipher",
			spec: func(s *v1.SCEPProfileSpec) { s.CryptoFloor = &v1.CryptoFloor{ContentEncryption: "RC2"} },
			want: []string{"spec.cryptoFloor.contentEncryption", `Unsupported value: "RC2"`, `"DES3"`, `"AES"`},
		},
		{
			name: "a digest floor that is not a SCEP digest",
			spec: func(s *v1.SCEPProfileSpec) { s.CryptoFloor = &v1.CryptoFloor{Digest: "MD5"} },
			want: []string{"spec.cryptoFloor.digest", `Unsupported value: "MD5"`},
		},
		{
			name: "an SPN with a realm",
			spec: kerberosDynamic(&v1.KerberosAuth{KDCs: []string{"dc1"}, ServicePrincipalName: "HTTP/ndes@CORP.EXAMPLE"}),
			want: []string{"spec.challenge.dynamic.kerberos.servicePrincipalName"},
		},
	}
}

func adcsValidProfiles() []profileCase {
	return []profileCase{
		{
			name:    "auth Kerberos with realm and KDCs",
			cluster: true,
			spec:    kerberosDynamic(&v1.KerberosAuth{Realm: "CORP.EXAMPLE", KDCs: []string{"dc1.corp.example", "10.0.0.2:88", "[fd00::2]:88"}, ServicePrincipalName: "HTTP/ndes.corp.example"}),
		},
		{
			name: "certificateTemplate with csrMode Rebuild",
			spec: func(s *v1.SCEPProfileSpec) {
				s.CSRMode = v1.CSRModeRebuild
				s.CertificateTemplate = "Web Server K8s_v2.1"
			},
		},
		{
			name: "an empty cryptoFloor gets DES3 and SHA1",
			spec: func(s *v1.SCEPProfileSpec) { s.CryptoFloor = &v1.CryptoFloor{} },
			check: func(t *testing.T, s *v1.SCEPProfileSpec) {
				if s.CryptoFloor == nil || s.CryptoFloor.ContentEncryption != "DES3" || s.CryptoFloor.Digest != "SHA1" {
					t.Errorf("stored cryptoFloor %+v; want DES3, SHA1", s.CryptoFloor)
				}
			},
		},
		{
			name: "auth Kerberos with a krb5.conf ConfigMap and NTLM fallback",
			spec: kerberosDynamic(&v1.KerberosAuth{Krb5ConfConfigMapRef: &v1.ConfigMapKeySelector{Name: "krb5"}, AllowNTLMFallback: true}),
		},
	}
}
