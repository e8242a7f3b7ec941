package ndes

import (
	"crypto"
	"crypto/md5" //nolint:gosec // RFC 4121 4.1.1.2 defines the channel binding hash as MD5; it binds, it does not protect a secret
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/chksumtype"
	"github.com/jcmturner/gokrb5/v8/iana/errorcode"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/scep-operator/scep-operator/internal/egress"
)

// negotiateTransport speaks HTTP Negotiate (RFC 4559) with a Kerberos
// ticket inside SPNEGO (RFC 4178), the way a Windows client reaches an IIS
// site whose Windows authentication has NTLM turned off. The first request
// goes without credentials: its 401 says whether IIS offers Negotiate, and
// over https its connection's certificate is what the ticket's channel
// binding names. The second carries the ticket. NTLM is used only where
// the profile allows it and Kerberos could not be tried at all.
type negotiateTransport struct {
	next   http.RoundTripper
	ntlm   http.RoundTripper // nil without AllowNTLMFallback and a password
	login  *kerberosLogin
	policy *egress.Policy
	logger logr.Logger
}

// RoundTrip sends req, authenticating with Negotiate when IIS asks.
func (n negotiateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	first := req.Clone(req.Context())
	first.Header.Del("Authorization")
	resp, err := n.next.RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	offered := offeredSchemes(resp)
	if !hasScheme(offered, "Negotiate") {
		if n.ntlm != nil && hasScheme(offered, "NTLM") {
			n.logger.Info("IIS does not offer Negotiate: falling back to NTLM, as the profile allows", "offered", strings.Join(offered, ", "))
			discard(resp)
			return n.ntlm.RoundTrip(req)
		}
		return resp, nil // fetch's refusalDetail names what IIS offers
	}
	token, err := n.token(req, resp.TLS)
	if err != nil {
		var ke *KerberosError
		if n.ntlm != nil && errors.As(err, &ke) && (ke.Unreachable || ke.Code == errorcode.KDC_ERR_S_PRINCIPAL_UNKNOWN) {
			// What Windows's Negotiate package does too: no ticket to be
			// had, so NTLM inside the same scheme.
			n.logger.Info("Kerberos cannot be used: falling back to NTLM, as the profile allows", "reason", ke.Detail)
			discard(resp)
			return n.ntlm.RoundTrip(req)
		}
		discard(resp)
		return nil, err
	}
	discard(resp)
	if trace, ok := req.Context().Value(handshakeTraceKey{}).(*handshakeTrace); ok {
		trace.ticketFor = n.login.spn
	}
	second := req.Clone(req.Context())
	second.Header.Set("Authorization", "Negotiate "+token)
	return n.next.RoundTrip(second)
}

// token logs in, asks for a ticket to the admin page's SPN and wraps it as
// a SPNEGO NegTokenInit, channel-bound to cs's server certificate.
func (n negotiateTransport) token(req *http.Request, cs *tls.ConnectionState) (string, error) {
	conf, err := resolvedKDCs(req.Context(), n.login.conf, n.policy)
	if err != nil {
		return "", err
	}
	cl := n.login.newClient(conf)
	// Destroy stops the session-renewal goroutine gokrb5 starts at login.
	defer cl.Destroy()
	if err := cl.Login(); err != nil {
		return "", n.login.classifyKerberos(err, "logging in")
	}
	tkt, key, err := cl.GetServiceTicket(n.login.spn)
	if err != nil {
		return "", n.login.classifyKerberos(err, "asking for a ticket to "+n.login.spn)
	}
	var cert *x509.Certificate
	if cs != nil && len(cs.PeerCertificates) > 0 {
		cert = cs.PeerCertificates[0]
	}
	b, err := spnegoInit(cl, tkt, key, channelBindingHash(cert))
	if err != nil {
		return "", &KerberosError{Realm: n.login.realm, Detail: "building the SPNEGO token: " + err.Error()}
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// spnegoInit builds the NegTokenInit that carries a Kerberos AP-REQ whose
// authenticator checksum (RFC 4121 4.1.1) holds bnd, the channel binding
// hash. gokrb5's own NewNegTokenInitKRB5 always sends zero bindings, which
// IIS with Extended Protection set to Require refuses; its parts are
// exported, so the token is assembled from them here.
func spnegoInit(cl *client.Client, tkt messages.Ticket, key types.EncryptionKey, bnd []byte) ([]byte, error) {
	auth, err := types.NewAuthenticator(cl.Credentials.Domain(), cl.Credentials.CName())
	if err != nil {
		return nil, err
	}
	auth.Cksum = types.Checksum{CksumType: chksumtype.GSSAPI, Checksum: gssChecksum(bnd, gssapi.ContextFlagInteg|gssapi.ContextFlagConf)}
	apReq, err := messages.NewAPReq(tkt, key, auth)
	if err != nil {
		return nil, err
	}
	ap, err := apReq.Marshal()
	if err != nil {
		return nil, err
	}
	// RFC 2743 3.1 InitialContextToken: [APPLICATION 0] { mech OID,
	// TOK_ID 01 00 (AP-REQ, RFC 4121 4.1), the AP-REQ }.
	oid, err := asn1.Marshal(gssapi.OIDKRB5.OID())
	if err != nil {
		return nil, err
	}
	mech := append(append(oid, 0x01, 0x00), ap...)
	tok := spnego.SPNEGOToken{Init: true, NegTokenInit: spnego.NegTokenInit{
		MechTypes:      []asn1.ObjectIdentifier{gssapi.OIDKRB5.OID()},
		MechTokenBytes: asn1tools.AddASNAppTag(mech, 0),
	}}
	return tok.Marshal()
}

// gssChecksum is the authenticator checksum of RFC 4121 4.1.1: the length
// of Bnd (16), Bnd, and the context flags, little-endian.
func gssChecksum(bnd []byte, flags int) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:4], 16)
	copy(b[4:20], bnd)
	binary.LittleEndian.PutUint32(b[20:24], uint32(flags))
	return b
}

// channelBindingHash is Bnd for a TLS connection to a server presenting
// cert: the MD5 of RFC 2744's gss_channel_bindings_struct with no
// addresses and, as application data, RFC 5929's tls-server-end-point
// binding, which is what Windows's Extended Protection for Authentication
// checks. Without a certificate (plain http) it is all zeros: no binding.
func channelBindingHash(cert *x509.Certificate) []byte {
	if cert == nil {
		return make([]byte, 16)
	}
	app := append([]byte("tls-server-end-point:"), endPointHash(cert)...)
	// initiator addrtype and address length, acceptor addrtype and
	// address length (all zero), then the application data's length.
	b := make([]byte, 20, 20+len(app))
	binary.LittleEndian.PutUint32(b[16:20], uint32(len(app)))
	sum := md5.Sum(append(b, app...)) //nolint:gosec // see the import
	return sum[:]
}

// endPointHash hashes cert with its signature's hash, MD5 and SHA-1
// upgraded to SHA-256 (RFC 5929 4.1).
func endPointHash(cert *x509.Certificate) []byte {
	h := crypto.SHA256
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = crypto.SHA384
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = crypto.SHA512
	}
	d := h.New()
	d.Write(cert.Raw)
	return d.Sum(nil)
}

// offeredSchemes lists the scheme names of a 401's WWW-Authenticate
// headers, bounded: it is the server's word.
func offeredSchemes(resp *http.Response) []string {
	var offered []string
	for _, v := range resp.Header.Values("Www-Authenticate") {
		scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
		if authScheme.MatchString(scheme) && len(offered) < maxSchemes {
			offered = append(offered, scheme)
		}
	}
	return offered
}

func hasScheme(offered []string, s string) bool {
	for _, o := range offered {
		if strings.EqualFold(o, s) {
			return true
		}
	}
	return false
}

// discard frees a 401 answer's connection for the next leg.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxChallengeBody))
	resp.Body.Close()
}
