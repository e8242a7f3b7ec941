package ndes

import (
	"bytes"
	"crypto/rc4"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-ntlmssp"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known answers from MS-NLMP 4.2.4.1.1 and from davenport.sourceforge.net's
// NTLM write-up (the vectors go-ntlmssp tests its client side with).
func TestNTOWFv2KnownAnswers(t *testing.T) {
	for _, tc := range []struct{ pw, user, domain, want string }{
		{"Password", "User", "Domain", "0c868a403bfd7a93a3001ef22ef02e3f"},
		{"SecREt01", "user", "DOMAIN", "04b8e0ba74289cc540826bab1dee63ae"},
	} {
		if got := hex.EncodeToString(ntowfv2(tc.pw, tc.user, tc.domain)); got != tc.want {
			t.Errorf("NTOWFv2(%s, %s, %s) = %s, want %s", tc.pw, tc.user, tc.domain, got, tc.want)
		}
	}
}

// authenticate assembles an AUTHENTICATE message; withMIC adds the Version
// and MIC fields (zero MIC, to be filled in).
func authenticate(lm, nt []byte, domain, user, ws string, encKey []byte, flags uint32, withMIC bool) []byte {
	header := 64
	if withMIC {
		header = 88
	}
	payload := [][]byte{lm, nt, utf16le(domain), utf16le(user), utf16le(ws), encKey}
	msg := append([]byte{}, ntlmSignature...)
	msg = binary.LittleEndian.AppendUint32(msg, 3)
	off := header
	for _, p := range payload {
		msg = appendField(msg, len(p), off)
		off += len(p)
	}
	msg = binary.LittleEndian.AppendUint32(msg, flags)
	if withMIC {
		msg = append(msg, 10, 0, 0x63, 0x45, 0, 0, 0, 15)
		msg = append(msg, make([]byte, 16)...)
	}
	for _, p := range payload {
		msg = append(msg, p...)
	}
	return msg
}

func TestVerifyKnownNTLMv2Response(t *testing.T) {
	// davenport's NTLMv2 response to server challenge 0123456789abcdef for
	// DOMAIN\user with password SecREt01.
	nt := unhex(t, "cbabbca713eb795d04c97abc01ee4983"+
		"01010000000000000090d336b734c301ffffff00112233440000000002000c0044004f004d00410049004e0001000c005300450052005600450052000400140064006f006d00610069006e002e0063006f006d00030022007300650072007600650072002e0064006f006d00610069006e002e0063006f006d000000000000000000")
	cs := &connState{challenge: []byte("sent"), serverChallenge: [8]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}}
	msg := authenticate(nil, nt, "DOMAIN", "user", "MYPC", nil, flagUnicode|flagNTLM, false)
	o := Options{Domain: "DOMAIN", Username: "user", Password: "SecREt01"}.withDefaults()
	if user, err := verifyAuthenticate(msg, cs, o); err != nil || user != `DOMAIN\user` {
		t.Errorf("right password: %q, %v", user, err)
	}
	o.Password = "SecREt02"
	if _, err := verifyAuthenticate(msg, cs, o); err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Errorf("wrong password: %v", err)
	}
	v1 := authenticate(make([]byte, 24), make([]byte, 24), "DOMAIN", "user", "", nil, flagUnicode|flagNTLM, false)
	if _, err := verifyAuthenticate(v1, cs, o); err == nil || !strings.Contains(err.Error(), "NTLMv1") {
		t.Errorf("NTLMv1: %v", err)
	}
	if _, err := verifyAuthenticate(msg[:70], cs, o); err == nil {
		t.Error("truncated message accepted")
	}
}

// TestMIC plays a Windows client that sends MsvAvFlags=2 and a MIC, with and
// without key exchange.
func TestMIC(t *testing.T) {
	o := Options{}.withDefaults()
	negotiate, err := ntlmssp.NewNegotiateMessage("", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, keyExch := range []bool{false, true} {
		neg := bytes.Clone(negotiate)
		if keyExch {
			binary.LittleEndian.PutUint32(neg[12:], binary.LittleEndian.Uint32(neg[12:])|flagKeyExch)
		}
		challenge, sc, err := newChallenge(neg, o)
		if err != nil {
			t.Fatal(err)
		}
		flags := binary.LittleEndian.Uint32(challenge[20:])
		if keyExch != (flags&flagKeyExch != 0) || flags&(flagUnicode|flagNTLM|flagTargetInfo|flagESS) != flagUnicode|flagNTLM|flagTargetInfo|flagESS {
			t.Fatalf("CHALLENGE flags %#x", flags)
		}
		cs := &connState{negotiate: neg, challenge: challenge, serverChallenge: sc}

		// The client's blob: its target info is the server's plus MsvAvFlags.
		info := challenge[binary.LittleEndian.Uint32(challenge[44:]):]
		info = info[:len(info)-4] // drop MsvAvEOL
		info = append(bytes.Clone(info), 6, 0, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0)
		blob := []byte{1, 1, 0, 0, 0, 0, 0, 0}
		blob = binary.LittleEndian.AppendUint64(blob, filetime(time.Now()))
		blob = append(blob, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0)
		blob = append(blob, info...)
		blob = append(blob, 0, 0, 0, 0)
		key := ntowfv2(DefaultPassword, DefaultUsername, DefaultDomain)
		proof := hmacMD5(key, sc[:], blob)
		exported := hmacMD5(key, proof)
		var encKey []byte
		if keyExch {
			random := bytes.Repeat([]byte{0x5a}, 16)
			c, _ := rc4.NewCipher(exported)
			encKey = make([]byte, 16)
			c.XORKeyStream(encKey, random)
			exported = random
		}
		msg := authenticate(make([]byte, 24), append(proof, blob...), DefaultDomain, DefaultUsername, "WS01", encKey, flags, true)
		copy(msg[72:88], hmacMD5(exported, neg, challenge, msg))

		if user, err := verifyAuthenticate(msg, cs, o); err != nil || user != `CORP\svc-scep` {
			t.Errorf("keyExch=%v: right MIC refused: %q, %v", keyExch, user, err)
		}
		msg[80] ^= 1
		if _, err := verifyAuthenticate(msg, cs, o); err == nil || !strings.Contains(err.Error(), "MIC") {
			t.Errorf("keyExch=%v: wrong MIC: %v", keyExch, err)
		}
	}
}
