package ndes

import (
	"crypto/md5" //nolint:gosec // the channel binding hash is MD5 by definition (RFC 4121 4.1.1.2)
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/service"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// Kerberos makes the admin page accept HTTP Negotiate with Kerberos tickets
// (SPNEGO), as IIS's Windows authentication with the Negotiate provider
// does, checked against a keytab for the page's service principal, which
// a real KDC (test/mitkdc) issues tickets for. The account is the ticket's
// client principal, DOMAIN\name for Options.AllowedUsers.
type Kerberos struct {
	// Keytab holds the key of SPN.
	Keytab []byte
	// SPN is the page's service principal; empty means HTTP/<host> of the
	// listener (HTTP/127.0.0.1).
	SPN string
	// NoNTLM turns the NTLM provider off (Microsoft's NTLM hardening): only
	// Negotiate is offered, and NTLM messages, raw or inside Negotiate,
	// are refused.
	NoNTLM bool
	// ExtendedProtection is IIS's tokenChecking: "" or "None" ignores
	// channel bindings, "Allow" refuses wrong ones, "Require" also refuses
	// missing ones. Bindings are checked against the listener's TLS
	// certificate (tls-server-end-point).
	ExtendedProtection string
	// MaxClockSkew is how far a ticket's authenticator time may be off;
	// zero means 5 minutes.
	MaxClockSkew time.Duration
}

// authenticateAdmin is the admin page's authentication: Kerberos tickets
// when Options.Kerberos is set, then whatever authenticate (NTLM, Basic)
// accepts, with the 401's offers adjusted to the providers configured.
func (s *Server) authenticateAdmin(w http.ResponseWriter, r *http.Request, o Options) (string, bool) {
	k := o.Kerberos
	if k == nil {
		return s.authenticate(w, r, o)
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	raw, _ := base64.StdEncoding.DecodeString(token)
	isNTLM := strings.HasPrefix(string(raw), "NTLMSSP\x00")
	switch {
	case strings.EqualFold(scheme, "Negotiate") && !isNTLM:
		user, err := s.verifyTicket(r, raw, o)
		if err != nil {
			s.unauthorized(offerWriter{w, k}, r, o, "Negotiate: "+err.Error())
			return "", false
		}
		s.authenticated(user, "Negotiate (Kerberos)")
		// IIS answers the accepted context; gokrb5 cannot marshal an
		// AP-REP, so the reply says accept-completed without one.
		w.Header().Set("WWW-Authenticate", "Negotiate oRQwEqADCgEAoQsGCSqGSIb3EgECAg==")
		return user, true
	case k.NoNTLM && (strings.EqualFold(scheme, "NTLM") || isNTLM):
		s.unauthorized(offerWriter{w, k}, r, o, scheme+": NTLM is turned off")
		return "", false
	}
	return s.authenticate(offerWriter{w, k}, r, o)
}

// offerWriter makes the 401s of authenticate offer Negotiate (first, as
// IIS lists its providers) and, with NoNTLM, not NTLM.
type offerWriter struct {
	http.ResponseWriter
	k *Kerberos
}

// WriteHeader rewrites a 401's WWW-Authenticate offers.
func (w offerWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		h := w.Header()
		var kept []string
		for _, v := range h.Values("WWW-Authenticate") {
			if v == "Negotiate" || (w.k.NoNTLM && v == "NTLM") {
				continue
			}
			kept = append(kept, v)
		}
		// A scheme with a token (an NTLM CHALLENGE under NTLM or
		// Negotiate) is a handshake in progress, not an offer.
		if len(kept) == 0 || !strings.Contains(kept[0], " ") || strings.HasPrefix(kept[0], "Basic ") {
			kept = append([]string{"Negotiate"}, kept...)
		}
		h["Www-Authenticate"] = kept
	}
	w.ResponseWriter.WriteHeader(code)
}

// verifyTicket checks a SPNEGO NegTokenInit carrying a Kerberos AP-REQ for
// the page's SPN and returns the client as DOMAIN\name.
func (s *Server) verifyTicket(r *http.Request, raw []byte, o Options) (string, error) {
	k := o.Kerberos
	kt := keytab.New()
	if err := kt.Unmarshal(k.Keytab); err != nil {
		return "", fmt.Errorf("the emulator's keytab: %v", err)
	}
	spn := k.SPN
	if spn == "" {
		spn = "HTTP/" + strings.Split(strings.TrimPrefix(s.HTTP.URL, s.scheme()+"://"), ":")[0]
	}
	var tok spnego.SPNEGOToken
	if err := tok.Unmarshal(raw); err != nil || !tok.Init {
		return "", errors.New("not a SPNEGO NegTokenInit")
	}
	var mech spnego.KRB5Token
	if err := mech.Unmarshal(tok.NegTokenInit.MechTokenBytes); err != nil || !mech.IsAPReq() {
		return "", errors.New("the mechanism token is not a Kerberos AP-REQ")
	}
	apReq := mech.APReq
	if got := apReq.Ticket.SName.PrincipalNameString(); !strings.EqualFold(got, spn) {
		return "", fmt.Errorf("ticket for %s, not %s", got, spn)
	}
	skew := k.MaxClockSkew
	if skew == 0 {
		skew = 5 * time.Minute
	}
	settings := service.NewSettings(kt, service.MaxClockSkew(skew), service.DecodePAC(false))
	ok, creds, err := service.VerifyAPREQ(&apReq, settings)
	if err != nil || !ok {
		return "", fmt.Errorf("AP-REQ refused: %v", err)
	}
	if err := s.checkBinding(apReq.Authenticator.Cksum.Checksum, k.ExtendedProtection); err != nil {
		return "", err
	}
	return o.Domain + `\` + creds.UserName(), nil
}

// scheme is the listener's URL scheme.
func (s *Server) scheme() string {
	if strings.HasPrefix(s.HTTP.URL, "https://") {
		return "https"
	}
	return "http"
}

// checkBinding checks the channel binding in a GSS authenticator checksum
// (RFC 4121 4.1.1: Lgth, Bnd, Flags) against the listener's certificate as
// IIS's Extended Protection does.
func (s *Server) checkBinding(cksum []byte, mode string) error {
	if mode == "" || strings.EqualFold(mode, "None") {
		return nil
	}
	if len(cksum) < 24 || binary.LittleEndian.Uint32(cksum) != 16 {
		return errors.New("authenticator checksum is not a GSS checksum")
	}
	bnd := cksum[4:20]
	unbound := true
	for _, b := range bnd {
		unbound = unbound && b == 0
	}
	if unbound {
		if strings.EqualFold(mode, "Require") {
			return errors.New("the ticket carries no channel binding, which Extended Protection (Require) demands")
		}
		return nil
	}
	cert := s.HTTP.Certificate()
	if cert == nil {
		return errors.New("channel binding over plain http")
	}
	if want := endpointBinding(cert); string(bnd) != string(want) {
		return errors.New("channel binding does not match this server's TLS certificate (a TLS proxy in between?)")
	}
	return nil
}

// endpointBinding is the Bnd a client connected to a server presenting
// cert sends: MD5 over the flattened gss_channel_bindings_struct (RFC 2744)
// with empty addresses and "tls-server-end-point:" + the certificate's hash
// (RFC 5929: its signature hash, SHA-256 at least) as application data.
func endpointBinding(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write(cert.Raw)
	appData := "tls-server-end-point:" + string(h.Sum(nil))
	var flat []byte
	for range 4 {
		flat = binary.LittleEndian.AppendUint32(flat, 0)
	}
	flat = binary.LittleEndian.AppendUint32(flat, uint32(len(appData)))
	flat = append(flat, appData...)
	sum := md5.Sum(flat) //nolint:gosec // see the import
	return sum[:]
}
