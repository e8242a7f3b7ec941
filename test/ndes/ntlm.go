package ndes

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/rc4"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/md4" //nolint:staticcheck // NTLM is defined on MD4; this verifies it, it protects nothing
)

// The server side of NTLM (MS-NLMP) over HTTP (RFC 4559 framing), NTLMv2
// only, as IIS with LmCompatibilityLevel 5 does. NTLM authenticates a TCP
// connection, not a request: the NEGOTIATE and AUTHENTICATE messages must
// arrive on the same connection, whose state lives in the request context
// (http.Server.ConnContext).

// NEGOTIATE/CHALLENGE/AUTHENTICATE flags (MS-NLMP 2.2.2.5).
const (
	flagUnicode          = 1 << 0
	flagOEM              = 1 << 1
	flagRequestTarget    = 1 << 2
	flagSign             = 1 << 4
	flagSeal             = 1 << 5
	flagNTLM             = 1 << 9
	flagAlwaysSign       = 1 << 15
	flagTargetTypeDomain = 1 << 16
	flagESS              = 1 << 19 // NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY
	flagTargetInfo       = 1 << 23
	flagVersion          = 1 << 25
	flag128              = 1 << 29
	flagKeyExch          = 1 << 30
	flag56               = 1 << 31
)

// AV_PAIR ids (MS-NLMP 2.2.2.1).
const (
	avEOL             = 0
	avNbComputerName  = 1
	avNbDomainName    = 2
	avDNSComputerName = 3
	avDNSDomainName   = 4
	avDNSTreeName     = 5
	avFlags           = 6
	avTimestamp       = 7
)

// computerName is the NDES server's NetBIOS name.
const computerName = "NDES01"

var ntlmSignature = []byte("NTLMSSP\x00")

type connKey struct{}

// connState is the NTLM state of one TCP connection.
type connState struct {
	mu              sync.Mutex
	negotiate       []byte // the NEGOTIATE message, for the MIC
	challenge       []byte // the CHALLENGE message sent, nil when none is outstanding
	serverChallenge [8]byte
	user            string // the account the connection authenticated as
}

// connContext gives every accepted connection its NTLM state.
func connContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connState{})
}

// authenticate checks the admin request's credentials. It returns the
// account as `DOMAIN\user`; when it returns false it has answered 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, o Options) (string, bool) {
	if o.Auth == AuthNone {
		return "", true
	}
	ntlmOn := o.Auth == AuthNTLM || o.Auth == AuthBoth
	basicOn := o.Auth == AuthBasic || o.Auth == AuthBoth
	cs, _ := r.Context().Value(connKey{}).(*connState)
	if cs == nil {
		cs = &connState{} // a handler mounted elsewhere: no connection state
	}
	header := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(header, " ")
	token = strings.TrimSpace(token)

	switch {
	case header == "":
		cs.mu.Lock()
		user := cs.user
		cs.mu.Unlock()
		if ntlmOn && user != "" && !o.AuthPersistSingleRequest {
			s.authenticated(user, "NTLM (connection)")
			return user, true
		}
		s.unauthorized(w, r, o, "no Authorization header")
		return "", false

	case basicOn && strings.EqualFold(scheme, "Basic"):
		name, pass, ok := r.BasicAuth()
		if !ok {
			s.unauthorized(w, r, o, "malformed Basic credentials")
			return "", false
		}
		n, dom := splitUser(name)
		user, want, err := account(n, dom, o)
		if err == nil && subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
			err = fmt.Errorf("wrong password for %s", user)
		}
		if err != nil {
			s.unauthorized(w, r, o, "Basic: "+err.Error())
			return "", false
		}
		s.authenticated(user, "Basic")
		return user, true

	case ntlmOn && (strings.EqualFold(scheme, "NTLM") || o.OfferNegotiate && strings.EqualFold(scheme, "Negotiate")):
		msg, err := base64.StdEncoding.DecodeString(token)
		if err != nil {
			s.unauthorized(w, r, o, scheme+": token is not base64")
			return "", false
		}
		if !bytes.HasPrefix(msg, ntlmSignature) || len(msg) < 12 {
			s.unauthorized(w, r, o, scheme+": not an NTLMSSP message (SPNEGO and Kerberos are not emulated)")
			return "", false
		}
		cs.mu.Lock()
		defer cs.mu.Unlock()
		switch binary.LittleEndian.Uint32(msg[8:]) {
		case 1:
			cs.user = "" // a new handshake forgets the old logon
			challenge, sc, err := newChallenge(msg, o)
			if err != nil {
				cs.challenge = nil
				s.unauthorized(w, r, o, scheme+" NEGOTIATE: "+err.Error())
				return "", false
			}
			cs.negotiate, cs.challenge, cs.serverChallenge = bytes.Clone(msg), challenge, sc
			s.count(func(c *Counters) { c.AuthChallenges++ })
			w.Header().Set("WWW-Authenticate", scheme+" "+base64.StdEncoding.EncodeToString(challenge))
			writeUnauthorized(w)
			return "", false
		case 3:
			if cs.challenge == nil {
				s.unauthorized(w, r, o, scheme+" AUTHENTICATE without a CHALLENGE on this connection")
				return "", false
			}
			user, err := verifyAuthenticate(msg, cs, o)
			cs.challenge = nil // one AUTHENTICATE per CHALLENGE
			if err != nil {
				s.unauthorized(w, r, o, scheme+" AUTHENTICATE: "+err.Error())
				return "", false
			}
			cs.user = user
			s.authenticated(user, "NTLM")
			return user, true
		default:
			s.unauthorized(w, r, o, scheme+": unexpected NTLM message type")
			return "", false
		}
	}
	s.unauthorized(w, r, o, "unsupported authentication scheme "+scheme)
	return "", false
}

func (s *Server) authenticated(user, scheme string) {
	s.count(func(c *Counters) { c.LastAuthUser, c.LastAuthScheme = user, scheme })
}

// unauthorized answers IIS's 401.1 and offers the configured schemes.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, o Options, why string) {
	s.count(func(c *Counters) { c.AuthFailures++; c.LastAuthFailure = why })
	if o.Auth == AuthNTLM || o.Auth == AuthBoth {
		if o.OfferNegotiate {
			w.Header().Add("WWW-Authenticate", "Negotiate")
		}
		w.Header().Add("WWW-Authenticate", "NTLM")
	}
	if o.Auth == AuthBasic || o.Auth == AuthBoth {
		realm := o.Realm
		if realm == "" {
			realm = r.Host
		}
		w.Header().Add("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", realm))
	}
	writeUnauthorized(w)
}

func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, iisUnauthorized)
}

// account finds the configured account for name in domain (empty: the
// server's own), returning it as `DOMAIN\user` with its password.
func account(name, domain string, o Options) (user, password string, err error) {
	if domain != "" && !knownDomain(domain, o) {
		return "", "", fmt.Errorf("unknown domain %q", domain)
	}
	if strings.EqualFold(name, o.Username) {
		return o.Domain + `\` + o.Username, o.Password, nil
	}
	for n, p := range o.Users {
		if strings.EqualFold(name, n) {
			return o.Domain + `\` + n, p, nil
		}
	}
	return "", "", fmt.Errorf("unknown user %q", name)
}

// newChallenge answers a NEGOTIATE message (MS-NLMP 2.2.1.1) with a
// CHALLENGE message (2.2.1.2) granting what the client asked for among
// what NTLMv2 servers grant, and returns it with its server challenge.
func newChallenge(negotiate []byte, o Options) (msg []byte, sc [8]byte, err error) {
	if len(negotiate) < 16 {
		return nil, sc, errors.New("message too short")
	}
	asked := binary.LittleEndian.Uint32(negotiate[12:])
	flags := uint32(flagNTLM | flagRequestTarget | flagTargetTypeDomain | flagTargetInfo)
	switch {
	case asked&flagUnicode != 0:
		flags |= flagUnicode
	case asked&flagOEM != 0:
		flags |= flagOEM
	default:
		return nil, sc, errors.New("neither Unicode nor OEM negotiated")
	}
	for _, f := range []uint32{flagAlwaysSign, flagESS, flagVersion, flag128, flag56, flagKeyExch, flagSign, flagSeal} {
		flags |= asked & f
	}
	rand.Read(sc[:])

	targetName := []byte(strings.ToUpper(o.Domain))
	if flags&flagUnicode != 0 {
		targetName = utf16le(strings.ToUpper(o.Domain))
	}
	var info []byte
	av := func(id uint16, v []byte) {
		info = binary.LittleEndian.AppendUint16(info, id)
		info = binary.LittleEndian.AppendUint16(info, uint16(len(v)))
		info = append(info, v...)
	}
	dnsComputer := strings.ToLower(computerName) + "." + strings.ToLower(o.DNSDomain)
	av(avNbDomainName, utf16le(strings.ToUpper(o.Domain)))
	av(avNbComputerName, utf16le(computerName))
	av(avDNSDomainName, utf16le(strings.ToLower(o.DNSDomain)))
	av(avDNSComputerName, utf16le(dnsComputer))
	av(avDNSTreeName, utf16le(strings.ToLower(o.DNSDomain)))
	av(avTimestamp, binary.LittleEndian.AppendUint64(nil, filetime(o.Now())))
	av(avEOL, nil)

	const header = 56 // through Version
	msg = append(msg, ntlmSignature...)
	msg = binary.LittleEndian.AppendUint32(msg, 2)
	msg = appendField(msg, len(targetName), header)
	msg = binary.LittleEndian.AppendUint32(msg, flags)
	msg = append(msg, sc[:]...)
	msg = append(msg, make([]byte, 8)...) // Reserved
	msg = appendField(msg, len(info), header+len(targetName))
	// Version: Windows Server 2019 (10.0.17763), NTLMSSP revision 15.
	msg = append(msg, 10, 0, 0x63, 0x45, 0, 0, 0, 15)
	msg = append(msg, targetName...)
	msg = append(msg, info...)
	return msg, sc, nil
}

func appendField(b []byte, n, offset int) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	b = binary.LittleEndian.AppendUint16(b, uint16(n))
	return binary.LittleEndian.AppendUint32(b, uint32(offset))
}

// authenticateMessage is an AUTHENTICATE message (MS-NLMP 2.2.1.3).
type authenticateMessage struct {
	raw                       []byte
	lm, nt                    []byte
	domain, user, workstation string
	encryptedRandomSessionKey []byte
	flags                     uint32
}

func parseAuthenticate(msg []byte) (*authenticateMessage, error) {
	if len(msg) < 64 {
		return nil, errors.New("message too short")
	}
	field := func(at int) ([]byte, error) {
		n := int(binary.LittleEndian.Uint16(msg[at:]))
		off := int(binary.LittleEndian.Uint32(msg[at+4:]))
		if off < 0 || off+n > len(msg) || off+n < off {
			return nil, fmt.Errorf("field at %d points outside the message", at)
		}
		return msg[off : off+n], nil
	}
	m := &authenticateMessage{raw: msg, flags: binary.LittleEndian.Uint32(msg[60:])}
	var strs [3][]byte
	var err error
	if m.lm, err = field(12); err != nil {
		return nil, err
	}
	if m.nt, err = field(20); err != nil {
		return nil, err
	}
	for i, at := range []int{28, 36, 44} {
		if strs[i], err = field(at); err != nil {
			return nil, err
		}
	}
	if m.encryptedRandomSessionKey, err = field(52); err != nil {
		return nil, err
	}
	dec := func(b []byte) string {
		if m.flags&flagUnicode == 0 {
			return string(b)
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		return string(utf16.Decode(u))
	}
	m.domain, m.user, m.workstation = dec(strs[0]), dec(strs[1]), dec(strs[2])
	return m, nil
}

// verifyAuthenticate checks an AUTHENTICATE message against the CHALLENGE
// of cs: NTLMv2 only (MS-NLMP 3.3.2), NTProofStr under the account's
// password, and the MIC when the client says it sent one. It returns the
// account as `DOMAIN\user`.
func verifyAuthenticate(msg []byte, cs *connState, o Options) (string, error) {
	m, err := parseAuthenticate(msg)
	if err != nil {
		return "", err
	}
	switch {
	case m.user == "" && len(m.nt) == 0:
		return "", errors.New("anonymous logon refused")
	case len(m.nt) == 24:
		return "", errors.New("NTLMv1 response refused (LmCompatibilityLevel 5 accepts NTLMv2 only)")
	case len(m.nt) < 16+28:
		return "", fmt.Errorf("NtChallengeResponse of %d bytes is no NTLMv2 response", len(m.nt))
	}
	// The account: the domain field, or the realm of a user@domain name
	// (which clients send whole with an empty domain).
	name, domain := m.user, m.domain
	if domain == "" {
		if n, d, ok := strings.Cut(name, "@"); ok {
			name, domain = n, d
		}
	}
	user, password, err := account(name, domain, o)
	if err != nil {
		return "", err
	}
	proof, blob := m.nt[:16], m.nt[16:]
	if blob[0] != 1 || blob[1] != 1 {
		return "", errors.New("NTLMv2 client challenge has an unknown version")
	}
	// NTOWFv2 hashes the user and domain fields exactly as sent.
	key := ntowfv2(password, m.user, m.domain)
	if !hmac.Equal(proof, hmacMD5(key, cs.serverChallenge[:], blob)) {
		return "", fmt.Errorf("wrong password for %s (NTProofStr mismatch)", user)
	}
	if avFlagsOf(blob[28:])&0x2 != 0 {
		if err := checkMIC(m, cs, key, proof); err != nil {
			return "", err
		}
	}
	return user, nil
}

// checkMIC verifies the AUTHENTICATE message's MIC (MS-NLMP 3.1.5.1.2),
// which sits after the Version field, at offset 72.
func checkMIC(m *authenticateMessage, cs *connState, ntowf, proof []byte) error {
	if len(m.raw) < 88 {
		return errors.New("MsvAvFlags announces a MIC but the message has none")
	}
	// NTLMv2: KeyExchangeKey is the SessionBaseKey.
	exported := hmacMD5(ntowf, proof)
	if m.flags&flagKeyExch != 0 {
		if len(m.encryptedRandomSessionKey) != 16 {
			return errors.New("KEY_EXCH negotiated without a 16-byte EncryptedRandomSessionKey")
		}
		c, err := rc4.NewCipher(exported)
		if err != nil {
			return err
		}
		key := make([]byte, 16)
		c.XORKeyStream(key, m.encryptedRandomSessionKey)
		exported = key
	}
	zeroed := bytes.Clone(m.raw)
	clear(zeroed[72:88])
	if !hmac.Equal(m.raw[72:88], hmacMD5(exported, cs.negotiate, cs.challenge, zeroed)) {
		return errors.New("MIC mismatch")
	}
	return nil
}

// avFlagsOf returns the MsvAvFlags value among AV_PAIRs, 0 if absent.
func avFlagsOf(pairs []byte) uint32 {
	for len(pairs) >= 4 {
		id := binary.LittleEndian.Uint16(pairs)
		n := int(binary.LittleEndian.Uint16(pairs[2:]))
		if id == avEOL || 4+n > len(pairs) {
			break
		}
		if id == avFlags && n == 4 {
			return binary.LittleEndian.Uint32(pairs[4:])
		}
		pairs = pairs[4+n:]
	}
	return 0
}

// ntowfv2 is MS-NLMP's NTOWFv2: HMAC_MD5(MD4(UTF16LE(password)),
// UTF16LE(UPPER(user) + domain)).
func ntowfv2(password, user, domain string) []byte {
	h := md4.New()
	h.Write(utf16le(password))
	return hmacMD5(h.Sum(nil), utf16le(strings.ToUpper(user)+domain))
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	m := hmac.New(md5.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// filetime is t in 100 ns intervals since 1601-01-01, as Windows counts.
func filetime(t time.Time) uint64 {
	return uint64(t.UnixNano()/100) + 116444736000000000
}

const iisUnauthorized = `<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>401 - Unauthorized: Access is denied due to invalid credentials.</title></head>
<body><div id="header"><h1>Server Error</h1></div><div id="content"><div class="content-container"><fieldset>
<h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>
<h3>You do not have permission to view this directory or page using the credentials that you supplied.</h3>
</fieldset></div></div></body></html>
`
