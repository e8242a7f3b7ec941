//go:build soak

package soak

import (
	"encoding/asn1"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// SCEP's authenticated attributes (RFC 8894 section 3.2.1), read from the
// pkiMessages the proxy passed: they are signed, not encrypted.
var (
	oidMessageType   = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}
	oidPKIStatus     = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 3}
	oidTransactionID = asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}
)

// send is one PKIOperation as the proxy saw it.
type send struct {
	Exchange
	tx      string
	msgType string // PKCSReq, RenewalReq, CertPoll, ... or "unreadable"
	status  string // SUCCESS, FAILURE, PENDING, or "" (no CertRep)
}

// issued says the server's answer was a certificate for a request.
func (s send) issued() bool {
	return s.status == "SUCCESS" && (s.msgType == "PKCSReq" || s.msgType == "RenewalReq")
}

// sends is what a server was sent, by transaction.
type sends map[string][]send

var messageTypes = map[string]string{"3": "CertRep", "17": "RenewalReq", "19": "PKCSReq", "20": "CertPoll", "21": "GetCert", "22": "GetCRL"}
var statuses = map[string]string{"0": "SUCCESS", "2": "FAILURE", "3": "PENDING"}

// sendsOf reads the exchanges' SCEP attributes.
func sendsOf(xs []Exchange) sends {
	out := sends{}
	for _, x := range xs {
		s := send{Exchange: x, msgType: "unreadable"}
		if p7, err := pkcs7.Parse(x.Request); err == nil {
			var tx, mt string
			if p7.UnmarshalSignedAttribute(oidTransactionID, &tx) == nil && p7.UnmarshalSignedAttribute(oidMessageType, &mt) == nil {
				s.tx, s.msgType = tx, messageTypes[mt]
			}
		}
		if x.Status == 200 {
			if p7, err := pkcs7.Parse(x.Response); err == nil {
				var st string
				if p7.UnmarshalSignedAttribute(oidPKIStatus, &st) == nil {
					s.status = statuses[st]
				}
			}
		}
		out[s.tx] = append(out[s.tx], s)
	}
	return out
}

// summary counts the messages by type and answer.
func (ss sends) summary() string {
	n := map[string]int{}
	txs := 0
	for tx, list := range ss {
		if tx != "" {
			txs++
		}
		for _, s := range list {
			answer := s.status
			switch {
			case s.Status == 0:
				answer = "no answer"
			case answer == "":
				answer = fmt.Sprintf("HTTP %d", s.Status)
			}
			if !s.Delivered && s.Status != 0 {
				answer += " (lost)"
			}
			n[s.msgType+" "+answer]++
		}
	}
	var parts []string
	for k, v := range n {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d transactions: %s", txs, strings.Join(parts, ", "))
}

// duplicates returns, for each transaction the server issued more than one
// certificate for, its sends in order.
func (ss sends) duplicates() map[string][]send {
	out := map[string][]send{}
	for tx, list := range ss {
		n := 0
		for _, s := range list {
			if s.issued() {
				n++
			}
		}
		if n > 1 && tx != "" {
			out[tx] = list
		}
	}
	return out
}

// countBeyond counts the certificates issued beyond one per transaction.
func countBeyond(dups map[string][]send) int {
	n := 0
	for _, list := range dups {
		issued := 0
		for _, s := range list {
			if s.issued() {
				issued++
			}
		}
		n += issued - 1
	}
	return n
}

// explainLost matches every certificate a server without CertPoll issued
// twice for one transaction to a logged fault: the earlier certificate's
// answer never reached the operator (the proxy withheld it, or the client
// had gone), or a manager or the API server or etcd was down between the
// two, so the operator could not keep what it had been told. A duplicate
// with no such fault fails the soak.
func (h *harness) explainLost(server string, dups map[string][]send) {
	h.mu.Lock()
	faults := append([]loggedFault(nil), h.faultLog...)
	h.mu.Unlock()
	var txs []string
	for tx := range dups {
		txs = append(txs, tx)
	}
	sort.Strings(txs)
	for _, tx := range txs {
		var prev *send
		for i, s := range dups[tx] {
			if !s.issued() {
				continue
			}
			if prev == nil {
				prev = &dups[tx][i]
				continue
			}
			why := explain(*prev, s, server, faults)
			h.logf("%s: transaction %s… issued again at %s after %s: %s", server, short(tx), s.At.Format("15:04:05.0"), prev.At.Format("15:04:05.0"), why)
			if why == "" {
				h.t.Errorf("%s: transaction %s… issued again at %s with no fault to explain it; its messages: %s", server, short(tx), s.At.Format("15:04:05.0"), describe(dups[tx]))
			}
			prev = &dups[tx][i]
		}
	}
}

// explain names the fault that made the operator send again after prev's
// certificate, or "" if none.
func explain(prev, again send, server string, faults []loggedFault) string {
	const slack = 2 * time.Second
	if !prev.Delivered {
		for _, f := range faults {
			if f.server == server && !prev.At.Before(f.from.Add(-slack)) && !prev.At.After(f.to.Add(slack)) {
				return "its answer was lost: " + f.String()
			}
		}
	}
	for _, f := range faults {
		if f.server == "" && f.from.Before(again.At) && f.to.Add(slack).After(prev.At) {
			if !prev.Delivered {
				return "its answer was lost (the client had gone): " + f.String()
			}
			return "the operator could not keep the answer: " + f.String()
		}
	}
	return ""
}

func describe(list []send) string {
	var parts []string
	for _, s := range list {
		d := ""
		if !s.Delivered {
			d = " (lost)"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s/%d%s", s.At.Format("15:04:05.0"), s.msgType, s.status, s.Status, d))
	}
	return strings.Join(parts, "; ")
}

func short(tx string) string { return tx[:min(12, len(tx))] }
