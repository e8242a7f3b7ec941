package scepclient

import (
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/scep-operator/scep-operator/internal/scep"
)

func TestFloorSelect(t *testing.T) {
	aes := Floor{Cipher: scep.CipherAES128CBC, Digest: crypto.SHA256, CipherField: "spec.cryptoFloor.contentEncryption", DigestField: "spec.cryptoFloor.digest"}
	for _, tc := range []struct {
		name  string
		caps  scep.Capabilities
		floor Floor
		want  string // the algorithms chosen
		error []string
	}{
		{name: "modern NDES", caps: scep.NewCapabilities("POSTPKIOperation", "SHA-512", "SHA-256", "SHA-1", "DES3", "AES"), floor: DefaultFloor, want: "AES-256-CBC/SHA-512"},
		{name: "no GetCACaps, default floor", caps: scep.MinimalCapabilities(), floor: DefaultFloor, want: "DES-EDE3-CBC/SHA-1"},
		{name: "SHA-1 is never chosen over better", caps: scep.NewCapabilities("SHA-1", "SHA-256", "DES3"), floor: DefaultFloor, want: "DES-EDE3-CBC/SHA-256"},
		{name: "no cipher announced means single DES: refused", caps: scep.NewCapabilities("SHA-256"), floor: DefaultFloor, error: []string{"content encryption at least DES-EDE3-CBC (it offers DES-CBC)", "allow DES"}},
		{name: "single DES explicitly allowed", caps: scep.NewCapabilities("SHA-256"), floor: Floor{Cipher: scep.CipherDES, Digest: crypto.SHA1}, want: "DES-CBC/SHA-256"},
		{name: "no GetCACaps, AES floor", caps: scep.MinimalCapabilities(), floor: aes, error: []string{"does not answer GetCACaps", "at least AES (it offers DES-EDE3-CBC)", "at least SHA-256 (it offers SHA-1)", "spec.cryptoFloor.contentEncryption: DES3 allows it", "spec.cryptoFloor.digest: SHA1 allows it"}},
		{name: "SCEPStandard meets an AES floor", caps: scep.NewCapabilities("SCEPStandard"), floor: aes, want: "AES-256-CBC/SHA-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.floor.Select(tc.caps)
			if tc.error == nil {
				if err != nil || got.String() != tc.want {
					t.Fatalf("got %s, %v; want %s", got, err, tc.want)
				}
				return
			}
			var bf *BelowFloorError
			if !errors.As(err, &bf) {
				t.Fatalf("got %s, %v; want a BelowFloorError", got, err)
			}
			for _, w := range tc.error {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
