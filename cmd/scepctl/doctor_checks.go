package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/scep-operator/scep-operator/internal/dn"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/ndes"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/internal/servertext"
)

// expirySoon is when a certificate's coming expiry becomes a warning; the
// operator's profile check warns in the same window.
const expirySoon = 30 * 24 * time.Hour

// doctor runs the steps against one target, in order; a step the next ones
// depend on stops them when it fails.
type doctor struct {
	t       *target
	r       *report
	timeout time.Duration
	enroll  bool
	subject string

	addrs  []netip.Addr
	caps   scep.Capabilities
	certs  *scep.CACerts
	info   *scepclient.ServerInfo
	ndesPW string // a password fetched by the NDES step, kept for --enroll
}

func (d *doctor) run(ctx context.Context) {
	fmt.Fprintf(d.r.w, "checking %s\n\n", d.t.name)
	steps := []func(context.Context) bool{d.checkDNS, d.checkTCP, d.checkTLS, d.checkCaps, d.checkCACert, d.checkPin, d.checkAlgorithms, d.checkTransport, d.checkNDES, d.checkEnrollment}
	for i, step := range steps {
		if !step(ctx) {
			if i+1 < len(steps) {
				d.r.add(verdictSkip, "", "the remaining steps need the one above")
			}
			return
		}
	}
}

func (d *doctor) host() string { return d.t.url.Hostname() }

func (d *doctor) port() string {
	if p := d.t.url.Port(); p != "" {
		return p
	}
	if d.t.url.Scheme == "https" {
		return "443"
	}
	return "80"
}

// checkDNS resolves the host and checks every address against the egress
// policy the operator would apply.
func (d *doctor) checkDNS(ctx context.Context) bool {
	host := d.host()
	if a, err := netip.ParseAddr(host); err == nil {
		d.addrs = []netip.Addr{a}
		d.r.add(verdictOK, "DNS", "%s is an address; nothing to resolve", host)
	} else {
		ctx, cancel := context.WithTimeout(ctx, d.timeout)
		defer cancel()
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			d.r.add(verdictFail, "DNS", "%s does not resolve: %v", host, err)
			d.r.fix("check the host name in the URL and this machine's DNS (the operator resolves it with the cluster's DNS, which may differ)")
			return false
		}
		d.addrs = ips
		names := make([]string, len(ips))
		for i, ip := range ips {
			names[i] = ip.String()
		}
		d.r.add(verdictOK, "DNS", "%s resolves to %s", host, joinNames(names, 4))
	}
	var refused []string
	for _, a := range d.addrs {
		if err := d.t.egress.Check(a); err != nil {
			refused = append(refused, err.Error())
		}
	}
	switch {
	case len(refused) == len(d.addrs):
		d.r.add(verdictFail, "egress", "%s", refused[0])
		d.r.fix("point the profile at an address the operator may reach, or change --egress-allow-cidrs / --egress-deny-cidrs (the chart's egress values)")
		return false
	case len(refused) > 0:
		d.r.add(verdictWarn, "egress", "%d of %d addresses are refused: %s", len(refused), len(d.addrs), refused[0])
	default:
		d.r.add(verdictOK, "egress", "the operator's egress policy allows %s", joinNames(addrStrings(d.addrs), 4))
	}
	return true
}

func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// checkTCP connects to the first address that answers.
func (d *doctor) checkTCP(ctx context.Context) bool {
	var errs []string
	for _, a := range d.addrs {
		addr := net.JoinHostPort(a.String(), d.port())
		start := time.Now()
		conn, err := d.t.egress.Dialer(d.timeout, 0).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = conn.Close()
			d.r.add(verdictOK, "TCP", "connected to %s in %s", addr, time.Since(start).Round(time.Millisecond))
			return true
		}
		errs = append(errs, fmt.Sprintf("%s: %v", addr, egress.ScrubTransportError(err)))
	}
	d.r.add(verdictFail, "TCP", "no address accepts a connection on port %s: %s", d.port(), joinNames(errs, 3))
	d.r.fix("check that the server listens on port %s, and that no firewall or NetworkPolicy (the chart's networkPolicy.scepServers) stands between", d.port())
	return false
}

// checkTLS shakes hands without verifying, then verifies the chain, the
// name and the validity separately, so each failure names its cause.
func (d *doctor) checkTLS(ctx context.Context) bool {
	if d.t.url.Scheme != "https" {
		d.r.add(verdictSkip, "TLS", "plain http: nothing authenticates the server; requests are encrypted to the CA GetCACert returns, so pin it (see the pin step)")
		return true
	}
	dialer := &tls.Dialer{NetDialer: d.t.egress.Dialer(d.timeout, 0), Config: &tls.Config{
		ServerName: d.host(), MinVersion: tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified below, step by step, to name each cause
	}}
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(d.host(), d.port()))
	if err != nil {
		d.r.add(verdictFail, "TLS", "no TLS handshake with %s: %v", d.t.url.Host, egress.ScrubTransportError(err))
		d.r.fix("check that port %s speaks TLS 1.2 or later (an http:// server behind an https:// URL fails here)", d.port())
		return false
	}
	state := conn.(*tls.Conn).ConnectionState()
	_ = conn.Close()
	leaf := state.PeerCertificates[0]
	intermediates := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	// A failure the target chose to ignore is a warning.
	bad := verdictFail
	if d.t.insecure {
		bad = verdictWarn
	}
	ok := true
	now := time.Now()
	_, chainErr := leaf.Verify(x509.VerifyOptions{Roots: d.t.roots, Intermediates: intermediates, CurrentTime: leaf.NotBefore.Add(time.Second)})
	switch {
	case chainErr != nil:
		d.r.add(bad, "TLS chain", "the server's certificate %s, issued by %s, does not chain to %s: %v", quoteName(leaf.Subject.String()), quoteName(leaf.Issuer.String()), d.t.rootsFrom, chainErr)
		d.r.fix("give the CA that issued the server's certificate (%s) in %s", quoteName(leaf.Issuer.String()), d.bundleField())
		ok = false
	default:
		d.r.add(verdictOK, "TLS chain", "%s, issued by %s, chains to %s", quoteName(leaf.Subject.String()), quoteName(leaf.Issuer.String()), d.t.rootsFrom)
	}
	switch left := leaf.NotAfter.Sub(now); {
	case now.Before(leaf.NotBefore):
		d.r.add(bad, "TLS expiry", "the server's certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
		d.r.fix("check the clocks of the server and of this machine")
		ok = false
	case left <= 0:
		d.r.add(bad, "TLS expiry", "the server's certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
		d.r.fix("renew the web server's TLS certificate")
		ok = false
	case left < expirySoon:
		d.r.add(verdictWarn, "TLS expiry", "the server's certificate expires on %s (in %d days)", leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
	default:
		d.r.add(verdictOK, "TLS expiry", "valid until %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := leaf.VerifyHostname(d.host()); err != nil {
		names := append(append([]string{}, leaf.DNSNames...), ipStrings(leaf.IPAddresses)...)
		d.r.add(bad, "TLS name", "the server's certificate is for %s, not %s", orNone(joinNames(names, 6)), d.host())
		d.r.fix("use a URL with one of the certificate's names, or reissue it with %s as a subjectAltName", d.host())
		ok = false
	} else {
		d.r.add(verdictOK, "TLS name", "the certificate names %s", d.host())
	}
	if d.t.insecure {
		d.r.add(verdictWarn, "TLS", "verification is turned off (%s): anyone on the path can answer for the server", d.t.insecureFrom)
		return true
	}
	return ok
}

func (d *doctor) bundleField() string {
	if d.t.rootsFrom == "the system roots" || strings.HasPrefix(d.t.rootsFrom, "--") {
		return "--ca-bundle (the profile's spec.tls.caBundle)"
	}
	return "the profile's spec.tls.caBundle or caBundleSecretRef"
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "no DNS name or address"
	}
	return s
}

// quoteName quotes a name the server chose, cleaned and capped.
func quoteName(s string) string { return servertext.Quote(s, servertext.MaxFieldBytes) }

// checkCaps asks GetCACaps; a refusal is the minimal set, as the client
// treats it (old NDES), and worth a warning.
func (d *doctor) checkCaps(ctx context.Context) bool {
	caps, err := d.t.client.GetCACaps(ctx)
	if err != nil {
		d.r.add(verdictFail, "GetCACaps", "%v", err)
		d.explain(err)
		return false
	}
	d.caps = caps
	list := caps.Strings()
	switch status := d.t.status[scepclient.OpGetCACaps]; {
	case status < 200 || status > 299:
		d.r.add(verdictWarn, "GetCACaps", "answered HTTP %d: assuming the minimal set (GET, SHA-1, DES3), as for old NDES", status)
		d.r.fix("if this is not an old NDES, check the URL's path: a server that refuses GetCACaps may refuse the rest")
	case len(list) == 0:
		d.r.add(verdictWarn, "GetCACaps", "the server lists no capabilities: only GET, SHA-1 and DES may be used")
	default:
		d.r.add(verdictOK, "GetCACaps", "%s", strings.Join(list, " "))
	}
	return true
}

// checkCACert asks GetCACert and checks each certificate's role and expiry
// and that one can receive requests.
func (d *doctor) checkCACert(ctx context.Context) bool {
	certs, err := d.t.client.GetCACert(ctx)
	if err != nil {
		d.r.add(verdictFail, "GetCACert", "%v", err)
		d.explain(err)
		return false
	}
	d.certs = certs
	d.r.add(verdictOK, "GetCACert", "%d certificate%s", len(certs.Certs), plural(len(certs.Certs)))
	ok := true
	now := time.Now()
	for _, cc := range certs.Certs {
		what := fmt.Sprintf("%s %s (%s)", cc.Role, quoteName(cc.Subject.String()), keyDescription(cc.PublicKey))
		switch left := cc.NotAfter.Sub(now); {
		case left <= 0:
			d.r.add(verdictFail, "CA expiry", "%s expired on %s", what, cc.NotAfter.UTC().Format(time.RFC3339))
			d.r.fix("renew the %s certificate on the SCEP server (and update the pin if it is pinned)", cc.Role)
			ok = false
		case left < expirySoon:
			d.r.add(verdictWarn, "CA expiry", "%s expires on %s (in %d days)", what, cc.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24))
		default:
			d.r.add(verdictOK, "CA expiry", "%s valid until %s", what, cc.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	recipient, err := certs.Recipient()
	if err != nil {
		d.r.add(verdictFail, "recipient", "%v", err)
		d.r.fix("SCEP encrypts requests to an RSA certificate: the server must return an RSA CA or RA (encryption) certificate")
		return false
	}
	d.r.add(verdictOK, "recipient", "requests are encrypted to %s (%s)", quoteName(recipient.Subject.String()), keyDescription(recipient.PublicKey))
	return ok
}

// checkPin checks the pin, whatever format it was given in, and prints the
// CA's fingerprints in every format a pin may take.
func (d *doctor) checkPin(context.Context) bool {
	issuer := d.certs.Issuer()
	if len(d.t.pins) == 0 {
		if d.t.url.Scheme == "http" {
			d.r.add(verdictWarn, "pin", "no CA pin over plain http: anyone on the path can answer GetCACert and receive the requests (and any challenge password)")
		} else {
			d.r.add(verdictOK, "pin", "no CA pin; the server is trusted through TLS")
		}
		if issuer != nil {
			d.printFingerprints(issuer, "to pin the CA, set caFingerprint (or --fingerprint) to one of")
		}
		return true
	}
	pinned, err := d.certs.PinAny(d.t.pins...)
	if err != nil {
		d.r.add(verdictFail, "pin", "%s (%s) matches no certificate the server sent", pinList(d.t.pins), d.t.pinFrom)
		for _, cc := range d.certs.Certs {
			d.printFingerprints(cc.Certificate, fmt.Sprintf("%s %s is", cc.Role, quoteName(cc.Subject.String())))
		}
		d.r.fix("if the CA was renewed, pin its new fingerprint (one of the above); otherwise the server is not the one pinned: send nothing to it")
		return false
	}
	for _, cc := range pinned.Certs {
		for _, pin := range d.t.pins {
			if pin.Matches(cc.Certificate) {
				d.r.add(verdictOK, "pin", "%s fingerprint %s matches %s %s", pin.Hash, pin.Hex(), cc.Role, quoteName(cc.Subject.String()))
				d.printFingerprints(cc.Certificate, "the same certificate in the other formats")
				break
			}
		}
	}
	if len(pinned.Ignored) > 0 {
		d.r.add(verdictWarn, "pin", "%d certificate%s the pinned one does not vouch for will be ignored", len(pinned.Ignored), plural(len(pinned.Ignored)))
	}
	d.certs = pinned
	return true
}

func (d *doctor) printFingerprints(c *x509.Certificate, lead string) {
	d.r.detail("%s:", lead)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA1, crypto.MD5} {
		d.r.detail("  %-7s %s", h, scep.FingerprintOf(c, h).Hex())
	}
}

// checkAlgorithms checks what the operator will encrypt and sign with, and
// the CA and RA key sizes against the floor.
func (d *doctor) checkAlgorithms(context.Context) bool {
	info := &scepclient.ServerInfo{Caps: d.caps, CACerts: d.certs, Issuer: d.certs.Issuer(), Algorithms: d.caps.Algorithms()}
	recipient, err := d.certs.Recipient()
	if err != nil {
		d.r.add(verdictFail, "algorithms", "%v", err)
		return false
	}
	info.Recipient = recipient
	d.info = info
	a := info.Algorithms
	var weak []string
	switch a.Cipher {
	case scep.CipherDES:
		weak = append(weak, "DES (56-bit, broken)")
	case scep.CipherDES3CBC:
		weak = append(weak, "3DES (deprecated)")
	}
	if a.Digest == crypto.SHA1 {
		weak = append(weak, "SHA-1")
	}
	if len(weak) > 0 {
		d.r.add(verdictWarn, "algorithms", "the server offers nothing better than %s: requests go with %s", strings.Join(weak, " and "), a)
		d.r.fix("enable AES and SHA-256 on the server (GetCACaps should list AES and SHA-256, or SCEPStandard)")
	} else {
		d.r.add(verdictOK, "algorithms", "requests go with %s", a)
	}
	ok := true
	for _, cc := range d.certs.Certs {
		if k, isRSA := cc.PublicKey.(*rsa.PublicKey); isRSA && k.N.BitLen() < d.t.keySizeFloor {
			d.r.add(verdictWarn, "key size", "%s %s has an RSA-%d key, below the floor of %d bits", cc.Role, quoteName(cc.Subject.String()), k.N.BitLen(), d.t.keySizeFloor)
			ok = false
		}
	}
	if ok {
		d.r.add(verdictOK, "key size", "every CA and RA RSA key has at least %d bits", d.t.keySizeFloor)
	}
	return true
}

// checkTransport says whether PKIOperation goes by POST, or by GET and then
// whether a request of the floor's key size fits IIS's query limit.
func (d *doctor) checkTransport(ctx context.Context) bool {
	if d.caps.POST() {
		d.r.add(verdictOK, "POST/GET", "PKIOperation goes by POST: no URL length limit applies")
		return true
	}
	n, err := d.queryBytes()
	if err != nil {
		d.r.add(verdictFail, "POST/GET", "building a sample request: %v", err)
		return false
	}
	if n > scepclient.MaxGETQueryBytes {
		d.r.add(verdictFail, "POST/GET", "the server takes GET only, and a request with an RSA-%d key needs a %d-byte query, over the %d bytes IIS (NDES) allows by default; the operator refuses to send it", d.t.keySizeFloor, n, scepclient.MaxGETQueryBytes)
		d.r.fix("make the server announce POSTPKIOperation (NDES: it does on Windows Server 2012 R2 and later), or raise IIS's maxQueryString")
		return false
	}
	if n > iisDefaultMaxQueryString {
		// IIS (NDES) refuses longer queries with 404.15 before the
		// server sees them, unless its maxQueryString was raised: ask.
		if err := d.t.client.ProbeGETLength(ctx, n); err != nil {
			d.r.add(verdictFail, "POST/GET", "the server takes GET only, and a request with an RSA-%d key needs a %d-byte query, over the %d bytes IIS (NDES) allows by default: a probe of that length was refused (%v)", d.t.keySizeFloor, n, iisDefaultMaxQueryString, err)
			d.r.fix("make the server announce POSTPKIOperation (NDES: it does on Windows Server 2012 R2 and later), or raise IIS's maxQueryString (Microsoft's NDES guidance: 65534)")
			return false
		}
		d.r.add(verdictWarn, "POST/GET", "the server takes GET only: a request with an RSA-%d key needs a %d-byte query, over IIS's default of %d; a probe of that length was accepted", d.t.keySizeFloor, n, iisDefaultMaxQueryString)
		return true
	}
	d.r.add(verdictWarn, "POST/GET", "the server takes GET only: a request with an RSA-%d key needs a %d-byte query (IIS's default limit %d); larger requests may not fit", d.t.keySizeFloor, n, iisDefaultMaxQueryString)
	return true
}

// iisDefaultMaxQueryString is IIS's requestFiltering maxQueryString default.
const iisDefaultMaxQueryString = 2048

// queryBytes builds a PKCSReq as the operator would (a key of the floor's
// size, a typical subject) and returns the length of its GET query.
func (d *doctor) queryBytes() (int, error) {
	key, err := rsa.GenerateKey(rand.Reader, max(d.t.keySizeFloor, 1024))
	if err != nil {
		return 0, err
	}
	msg, err := d.pkcsReq(key, "CN=a-typical-workload.namespace.svc.cluster.local", "")
	if err != nil {
		return 0, err
	}
	q := url.Values{}
	q.Set("operation", scepclient.OpPKIOperation)
	q.Set("message", base64.StdEncoding.EncodeToString(msg.Raw))
	return len(q.Encode()), nil
}

// pkcsReq builds a PKCSReq for key and subject, with a challenge if given,
// signed by the key itself.
func (d *doctor) pkcsReq(key *rsa.PrivateKey, subject, challenge string) (*scep.Message, error) {
	name, err := dn.Parse(subject)
	if err != nil {
		return nil, fmt.Errorf("%w: --subject: %v", errUsage, err)
	}
	csr, err := scep.NewCSR(scep.CSRTemplate{Subject: name, ChallengePassword: challenge}, key)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, err
	}
	signer, err := scep.NewSelfSignedSigner(key, parsed.RawSubject, 0)
	if err != nil {
		return nil, err
	}
	return scep.NewPKCSReq(csr, d.info.MessageOptions(signer, ""))
}

// checkNDES fetches one password from NDES's admin page when one is given;
// the password is never shown.
func (d *doctor) checkNDES(ctx context.Context) bool {
	if d.t.ndes == nil {
		return true
	}
	pw, err := d.t.ndes(ctx)
	if err != nil {
		d.r.add(verdictFail, "NDES admin", "%v", err)
		switch {
		case ndes.IsCacheFull(err):
			d.r.fix("wait for passwords to be used or to expire (60 minutes), or raise PasswordMax")
		case ndes.IsAuthError(err):
			d.r.fix("check the account in the credentials Secret (or --ndes-username/--ndes-password-file)")
		default:
			d.r.fix("check the admin page URL (https://HOST/certsrv/mscep_admin/) and that IIS serves it to this account")
		}
		return false
	}
	d.ndesPW = pw
	how := "it is held in NDES's password cache (5 by default) until used or 60 minutes pass"
	if d.enroll {
		how = "the test enrollment uses it"
	}
	d.r.add(verdictOK, "NDES admin", "%s issued a challenge password (not shown); %s", d.t.ndesURL, how)
	return true
}

// checkEnrollment sends one PKCSReq, with --enroll only.
func (d *doctor) checkEnrollment(ctx context.Context) bool {
	if !d.enroll {
		d.r.add(verdictSkip, "enrollment", "not tried: --enroll sends a test request (the server issues a real certificate)")
		return true
	}
	challenge := d.ndesPW
	if challenge == "" && d.t.challenge != nil {
		pw, err := d.t.challenge(ctx)
		if err != nil {
			d.r.add(verdictFail, "enrollment", "reading the challenge password: %v", err)
			return false
		}
		challenge = pw
	}
	key, err := rsa.GenerateKey(rand.Reader, max(d.t.keySizeFloor, 2048))
	if err != nil {
		d.r.add(verdictFail, "enrollment", "generating a key: %v", err)
		return false
	}
	msg, err := d.pkcsReq(key, d.subject, challenge)
	if err != nil {
		d.r.add(verdictFail, "enrollment", "building the request: %v", err)
		return false
	}
	rep, err := d.t.client.Send(ctx, d.info, msg)
	var failure *scep.FailureError
	switch {
	case err == nil && rep.Status == scep.StatusSuccess:
		leaf := rep.Certificates[0]
		d.r.add(verdictOK, "enrollment", "issued %s, serial %s, by %s, valid until %s", quoteName(leaf.Subject.String()), leaf.SerialNumber.Text(16), quoteName(leaf.Issuer.String()), leaf.NotAfter.UTC().Format(time.RFC3339))
		return true
	case err == nil:
		d.r.add(verdictWarn, "enrollment", "PENDING (transaction %s): the server holds requests for a CA manager's approval; the operator polls them with CertPoll until the profile's pendingTimeout", msg.TransactionID)
		return true
	case errors.As(err, &failure):
		d.r.add(verdictFail, "enrollment", "%v", err)
		switch {
		case failure.FailInfo == scep.BadRequest && challenge == "":
			d.r.fix("the request carried no challenge password: the server probably wants one (a Static or Dynamic challenge in the profile, --challenge-file or --ndes-admin-url here)")
		case failure.FailInfo == scep.BadRequest:
			d.r.fix("the challenge password was refused: check it (NDES passwords are single-use), or the server's template and policy for subject %s", d.subject)
		case failure.FailInfo == scep.BadMessageCheck:
			d.r.fix("the server could not decrypt or verify the request: check which certificate it decrypts with (NDES: the CEP Encryption certificate)")
		default:
			d.r.fix("read the server's log for this transaction (%s)", msg.TransactionID)
		}
		return false
	}
	d.r.add(verdictFail, "enrollment", "%v", err)
	d.explain(err)
	return false
}

// explain adds the fix for a transport or content error of a SCEP round
// trip.
func (d *doctor) explain(err error) {
	var (
		httpErr  *scepclient.HTTPError
		content  *scepclient.ContentError
		tooLarge *scepclient.TooLargeError
		reply    *scep.ReplyError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &httpErr) && httpErr.StatusCode == 404:
		d.r.fix("check the URL's path (MicroMDM /scep, step-ca /scep/PROVISIONER, NDES /certsrv/mscep/mscep.dll)")
	case errors.As(err, &httpErr) && httpErr.StatusCode >= 500:
		d.r.fix("the server failed: read its log (NDES: the Application event log and IIS logs)")
	case errors.As(err, &httpErr):
		d.r.fix("the server refused the request: check the URL and whether a proxy or login portal stands in front of it")
	case errors.As(err, &content):
		d.r.fix("something other than a SCEP server answered (a proxy, a login portal, a web page): check the URL and the path to the server")
	case errors.As(err, &tooLarge):
		d.r.fix("the answer is far larger than SCEP's: check that the URL is the SCEP endpoint")
	case errors.As(err, &reply):
		d.r.fix("the reply broke the protocol (signature, nonce, transaction or encryption): a proxy may alter answers, or the server is faulty")
	case errors.As(err, &netErr) && netErr.Timeout():
		d.r.fix("the server did not answer within %s: check its load, or raise --timeout", d.timeout)
	}
}

// pinList shows the pins for a message.
func pinList(pins []scep.Fingerprint) string {
	out := make([]string, len(pins))
	for i, p := range pins {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}
