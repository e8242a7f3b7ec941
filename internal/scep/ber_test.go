package scep

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
)

// nestedIndefinite is the body of finding 7: n levels of indefinite-length
// SEQUENCE, never closed (2 bytes a level; 1 MiB holds 512 Ki levels).
func nestedIndefinite(n int) []byte {
	return bytes.Repeat([]byte{0x30, 0x80}, n)
}

// scanBomb is 1 MiB that pkcs7's ber2der reads in quadratic time: an
// indefinite-length SEQUENCE of small elements, each followed by a search
// for 00 00 through the long element at the end (20 s of CPU unchecked).
func scanBomb() []byte {
	b := []byte{0x30, 0x80}
	b = append(b, bytes.Repeat([]byte{0x04, 0x00}, MaxBERElements-2)...)
	pad := 1<<20 - len(b) - 7
	b = append(b, encodeHeader(0x04, pad)...)
	b = append(b, bytes.Repeat([]byte{0x01}, pad)...)
	return append(b, 0x00, 0x00)
}

// nestedDefinite is n levels of definite-length SEQUENCE around an INTEGER.
func nestedDefinite(n int) []byte {
	der := []byte{0x02, 0x01, 0x05}
	for i := 0; i < n; i++ {
		der = append(encodeHeader(0x30, len(der)), der...)
	}
	return der
}

func encodeHeader(tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return []byte{tag, byte(n)}
	case n < 0x100:
		return []byte{tag, 0x81, byte(n)}
	case n < 0x10000:
		return []byte{tag, 0x82, byte(n >> 8), byte(n)}
	}
	return []byte{tag, 0x83, byte(n >> 16), byte(n >> 8), byte(n)}
}

func TestCheckBER(t *testing.T) {
	ca := testCert(t, testKey(t, 0), "CA", true, x509.KeyUsageCertSign, nil, nil)
	bundle, err := pkcs7.DegenerateCertificate(ca.Raw)
	if err != nil {
		t.Fatal(err)
	}
	// BER as some servers write it: indefinite lengths, closed properly.
	indefinite := []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x80, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}
	// The SEQUENCE and its children: MaxBERElements in all.
	flat := append(encodeHeader(0x30, 2*(MaxBERElements-1)), bytes.Repeat([]byte{0x04, 0x00}, MaxBERElements-1)...)
	for _, tc := range []struct {
		name string
		data []byte
		says string // "" means accepted
	}{
		{name: "a certificate", data: ca.Raw},
		{name: "a PKCS#7 bundle", data: bundle},
		{name: "BER with indefinite lengths", data: indefinite},
		{name: "trailing bytes are not looked at", data: append([]byte{0x05, 0x00}, 0xff, 0xff)},
		{name: "high tag number", data: []byte{0x1f, 0x81, 0x01, 0x00}},
		{name: fmt.Sprint(MaxBERDepth, " levels"), data: nestedDefinite(MaxBERDepth)},
		{name: fmt.Sprint(MaxBERDepth+1, " levels"), data: nestedDefinite(MaxBERDepth + 1), says: "nested more than 64 deep"},
		{name: "deep indefinite nesting", data: nestedIndefinite(1000), says: "nested more than 64 deep"},
		{name: "empty", data: nil, says: "ends inside an element"},
		{name: "length past the data", data: []byte{0x30, 0x05, 0x02, 0x01}, says: "a length of 5 bytes where 2 remain"},
		{name: "child past its parent", data: []byte{0x30, 0x03, 0x04, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00}, says: "a length of 5 bytes where 1 remain"},
		{name: "length of 5 bytes", data: []byte{0x04, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00}, says: "a length of 5 bytes"},
		{name: "reserved length 0xff", data: []byte{0x04, 0xff}, says: "a length of 127 bytes"},
		{name: "length with a leading zero", data: []byte{0x04, 0x81, 0x00}, says: "leading zero"},
		{name: "primitive indefinite", data: []byte{0x04, 0x80, 0x00, 0x00}, says: "primitive element with an indefinite length"},
		{name: "indefinite without end-of-contents", data: []byte{0x30, 0x80, 0x02, 0x01, 0x01}, says: "no end-of-contents"},
		// pkcs7's ber2der would read the 00 00 as a child and the elements
		// after it as more content, nesting without bound.
		{name: "indefinite ending before any content", data: append([]byte{0x30, 0x80, 0x00, 0x00}, bytes.Repeat([]byte{0x30, 0x80, 0x00, 0x00}, 10)...), says: "ends before any content"},
		{name: "tag number of 5 bytes", data: []byte{0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, says: "tag number longer than 4 bytes"},
		{name: "too many elements", data: append(encodeHeader(0x30, 2*(MaxBERElements+1)), bytes.Repeat([]byte{0x04, 0x00}, MaxBERElements+1)...), says: "more than 65536 elements"},
		{name: "as many elements as allowed", data: flat},
		{name: "quadratic end-of-contents search", data: scanBomb(), says: "scan more than 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBER(tc.data)
			if tc.says == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var be *BERError
			if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("CheckBER = %v, want a *BERError saying %q", err, tc.says)
			}
		})
	}
}

// TestCheckBERAcceptsRealAnswers: every captured answer of MicroMDM,
// step-ca and the NDES-like server passes the walk.
func TestCheckBERAcceptsRealAnswers(t *testing.T) {
	for _, prefix := range []string{"cacert-", "certrep-"} {
		for _, s := range seeds(t, prefix) {
			if err := CheckBER(s); err != nil {
				t.Errorf("%s seed refused: %v", prefix, err)
			}
		}
	}
}

// TestDeepBERRefusedBounded is finding 7: a 1 MiB GetCACert body of nested
// indefinite-length BER grew pkcs7's recursive ber2der to a 128 MiB
// goroutine stack. It is now refused by the walk before any parse, with a
// clear error, and neither the stack nor the heap grows with the body.
func TestDeepBERRefusedBounded(t *testing.T) {
	body := nestedIndefinite(1 << 19) // 1 MiB
	// 5 bytes a level: 200 Ki levels in 1 MiB, built from the inside out.
	definite := make([]byte, 1<<20)
	end := len(definite)
	for end >= 6 {
		n := len(definite) - end
		copy(definite[end-5:], []byte{0x30, 0x83, byte(n >> 16), byte(n >> 8), byte(n)})
		end -= 5
	}
	definite = definite[end:]
	for _, tc := range []struct {
		name  string
		parse func() error
	}{
		{name: "GetCACert", parse: func() error { _, err := ParseCACerts(body, "application/x-x509-ca-ra-cert"); return err }},
		{name: "CertRep", parse: func() error { _, err := ParseCertRep(body); return err }},
		{name: "CertRep, definite lengths", parse: func() error { _, err := ParseCertRep(definite); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				err          error
				stack, alloc uint64
			}
			done := make(chan result)
			go func() {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				err := tc.parse()
				// Read while this goroutine's stack is as large as the parse
				// made it.
				runtime.ReadMemStats(&after)
				done <- result{err: err, stack: after.StackInuse - min(after.StackInuse, before.StackInuse), alloc: after.TotalAlloc - before.TotalAlloc}
			}()
			r := <-done
			if r.err == nil || !strings.Contains(r.err.Error(), "nested more than 64 deep") {
				t.Fatalf("err = %v, want the nesting refused", r.err)
			}
			// Other goroutines of the test binary move these numbers a
			// little; the unbounded parse moved them by 128 MiB.
			if r.stack > 4<<20 {
				t.Errorf("stacks grew by %d KiB", r.stack>>10)
			}
			if r.alloc > 4<<20 {
				t.Errorf("%d KiB allocated", r.alloc>>10)
			}
		})
	}
}

// FuzzCheckBER: the walk never panics, and what it accepts, pkcs7 parses
// (or refuses) without a panic.
func FuzzCheckBER(f *testing.F) {
	for _, s := range seeds(f, "") {
		f.Add(s)
	}
	f.Add(nestedIndefinite(100))
	f.Add(nestedDefinite(70))
	f.Add([]byte{0x30, 0x80, 0x00, 0x00, 0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x1f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		if CheckBER(data) != nil {
			return
		}
		_, _ = parsePKCS7(data)
	})
}

// hostileReply is a CertRep signed by key/cert whose attributes are the
// given strings, for tests of what a server's words may do.
func hostileReply(t *testing.T, m *Message, signer *Signer, txID, status, failInfo, failInfoText string) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(nil)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	utf8 := func(s string) asn1.RawValue { return asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)} }
	attrs := []pkcs7.Attribute{
		{Type: oidTransactionID, Value: utf8(txID)},
		{Type: oidMessageType, Value: utf8(string(TypeCertRep))},
		{Type: oidPKIStatus, Value: utf8(status)},
		{Type: oidFailInfo, Value: utf8(failInfo)},
		{Type: oidFailInfoText, Value: utf8(failInfoText)},
		{Type: oidSenderNonce, Value: []byte("0123456789abcdef")},
		{Type: oidRecipientNonce, Value: m.SenderNonce},
	}
	if err := sd.AddSigner(signer.Certificate, signer.Key, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestServerTextCleaned is finding 11: a server's failInfoText,
// transactionID, failInfo and pkiStatus reach the signer (and from there a
// CertificateRequest's status and Events) cleaned and capped.
func TestServerTextCleaned(t *testing.T) {
	caKey := testKey(t, 0)
	ca := testCert(t, caKey, "CA", true, x509.KeyUsageCertSign|x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, nil, nil)
	server := &Signer{Certificate: ca, Key: caKey}
	msg := pkcsReqTo(t, ca, "text.example")
	hostile := "denied\r\n\x1b[2J<script>SECRET</script>\u202e" + strings.Repeat("A", 10000)
	clean := func(what, s string, max int) {
		t.Helper()
		if len(s) > max || strings.ContainsAny(s, "\r\n\x1b\u202e") {
			t.Errorf("%s = %q (%d bytes): not cleaned or capped at %d", what, s, len(s), max)
		}
	}

	// FAILURE with a hostile failInfoText and failInfo.
	der := hostileReply(t, msg, server, string(msg.TransactionID), string(StatusFailure), "2"+hostile, hostile)
	rep, err := msg.ReadReply(der, []*x509.Certificate{ca})
	var fe *FailureError
	if !errors.As(err, &fe) || rep == nil {
		t.Fatalf("ReadReply = %v, want a *FailureError", err)
	}
	clean("FailInfoText", rep.FailInfoText, 128)
	clean("FailureError.Text", fe.Text, 128)
	clean("FailInfo", string(rep.FailInfo), 128)
	if !strings.HasPrefix(rep.FailInfoText, "denied [2J<script>SECRET</script>") {
		t.Errorf("FailInfoText = %q: the printable text should be kept", rep.FailInfoText)
	}
	msgText := err.Error()
	clean("FailureError.Error()", msgText, 400)
	if !strings.Contains(msgText, `the server says "denied`) {
		t.Errorf("%q does not quote the server's words", msgText)
	}

	// A transactionID that is not ours: refused, named capped.
	der = hostileReply(t, msg, server, hostile, string(StatusPending), "", "")
	_, err = msg.ReadReply(der, []*x509.Certificate{ca})
	var re *ReplyError
	if !errors.As(err, &re) || re.Reason != "TransactionIDMismatch" {
		t.Fatalf("ReadReply = %v, want TransactionIDMismatch", err)
	}
	clean("TransactionIDMismatch error", err.Error(), 300)
	if rep, err := ParseCertRep(der); err != nil {
		t.Fatal(err)
	} else {
		clean("TransactionID", string(rep.TransactionID), 128)
	}

	// Our transactionID with a control character appended is not ours.
	der = hostileReply(t, msg, server, string(msg.TransactionID)+"\x00", string(StatusPending), "", "")
	if _, err := msg.ReadReply(der, []*x509.Certificate{ca}); !errors.As(err, &re) || re.Reason != "TransactionIDMismatch" {
		t.Errorf("ReadReply = %v, want TransactionIDMismatch (the exact bytes are compared)", err)
	}

	// An unknown pkiStatus is named capped.
	der = hostileReply(t, msg, server, string(msg.TransactionID), hostile, "", "")
	_, err = msg.ReadReply(der, []*x509.Certificate{ca})
	if !errors.As(err, &re) || re.Reason != "UnknownStatus" {
		t.Fatalf("ReadReply = %v, want UnknownStatus", err)
	}
	clean("UnknownStatus error", err.Error(), 100)

	// The issuer named in an Issued Event is the server's too.
	issuer := testCert(t, caKey, "CA\r\n"+strings.Repeat("B", 300), true, x509.KeyUsageCertSign, nil, nil)
	leaf := testCert(t, testKey(t, 1), "leaf", false, x509.KeyUsageDigitalSignature, issuer, caKey)
	if got := (&CertRep{Certificates: []*x509.Certificate{leaf}}).IssuedBy(); !strings.HasPrefix(got, "CN=CA") {
		t.Errorf("IssuedBy = %q", got)
	} else {
		clean("IssuedBy", got, 128)
	}
	if got := (&CertRep{}).IssuedBy(); got != "" {
		t.Errorf("IssuedBy without a certificate = %q", got)
	}
}
