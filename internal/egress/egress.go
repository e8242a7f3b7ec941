// Package egress decides which network addresses the operator may connect
// to on behalf of a profile. A namespaced SCEPProfile's url and NDES admin
// url may name any host, so without a policy a tenant could make the
// operator fetch from the cloud metadata service or any internal address
// (SSRF). The policy is checked in the dialer's Control function, on the
// address actually being connected to after DNS resolution, so a name that
// resolves differently on a second lookup (DNS rebinding) cannot slip past
// it; and on redirect targets and, when a proxy is used, on IP-literal
// destinations, which the operator never dials itself.
package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Flag names, which refusals name so that an admin knows what to change.
const (
	AllowFlag = "--egress-allow-cidrs"
	DenyFlag  = "--egress-deny-cidrs"
)

// Rule is one CIDR of a policy and where it comes from.
type Rule struct {
	// Prefix is the network, masked.
	Prefix netip.Prefix
	// Allow is true for an allow rule, false for a deny rule.
	Allow bool
	// Why names the rule for a person: a built-in default's purpose or the
	// flag that set it.
	Why string
}

// Defaults are the networks refused unless a more specific allow rule
// says otherwise: link-local (where cloud metadata services live), the
// metadata addresses of the large clouds outside it, and the unspecified
// addresses (Linux connects 0.0.0.0 to the local host).
var Defaults = []Rule{
	{Prefix: netip.MustParsePrefix("169.254.0.0/16"), Why: "link-local"},
	{Prefix: netip.MustParsePrefix("169.254.169.254/32"), Why: "the cloud metadata service"},
	{Prefix: netip.MustParsePrefix("fe80::/10"), Why: "link-local"},
	{Prefix: netip.MustParsePrefix("fd00:ec2::254/128"), Why: "the AWS metadata service (IPv6)"},
	{Prefix: netip.MustParsePrefix("100.100.100.200/32"), Why: "the Alibaba Cloud metadata service"},
	{Prefix: netip.MustParsePrefix("0.0.0.0/8"), Why: "unspecified (this host)"},
	{Prefix: netip.MustParsePrefix("::/128"), Why: "unspecified (this host)"},
}

// Policy says which addresses may be connected to. The most specific rule
// (longest prefix) containing the address decides, a deny winning a tie;
// an address no rule contains is allowed when there are no allow rules,
// refused otherwise. So the defaults hold against a broad allow rule such
// as 0.0.0.0/0, a more specific one (169.254.10.0/24) reopens a part of
// them, and the single metadata addresses are never reopened. The zero
// Policy refuses nothing; use New or Default.
type Policy struct {
	rules    []Rule
	hasAllow bool
}

// Default returns the policy of Defaults alone: everything but link-local,
// metadata and unspecified addresses is allowed (loopback included).
func Default() *Policy {
	p, _ := New(nil, nil)
	return p
}

// New returns the policy of Defaults plus allow and deny rules.
func New(allow, deny []netip.Prefix) (*Policy, error) {
	p := &Policy{rules: slices.Clone(Defaults)}
	for _, pf := range allow {
		if !pf.IsValid() {
			return nil, fmt.Errorf("%s: invalid prefix", AllowFlag)
		}
		p.rules = append(p.rules, Rule{Prefix: unmapPrefix(pf.Masked()), Allow: true, Why: AllowFlag})
		p.hasAllow = true
	}
	for _, pf := range deny {
		if !pf.IsValid() {
			return nil, fmt.Errorf("%s: invalid prefix", DenyFlag)
		}
		p.rules = append(p.rules, Rule{Prefix: unmapPrefix(pf.Masked()), Why: DenyFlag})
	}
	return p, nil
}

// Parse returns the policy of Defaults plus the comma-separated CIDR lists
// of the two flags (either may be empty). A bare address counts as a
// single-address network.
func Parse(allow, deny string) (*Policy, error) {
	a, err := ParseCIDRs(allow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", AllowFlag, err)
	}
	d, err := ParseCIDRs(deny)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", DenyFlag, err)
	}
	return New(a, d)
}

// ParseCIDRs parses a comma-separated list of CIDRs or addresses; blanks
// around entries and empty entries are ignored.
func ParseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pf, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or fd00::/8", f)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) into
// its IPv4 form, as addresses are unmapped before they are checked.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// RefusedError is a connection the policy refused.
type RefusedError struct {
	// Addr is the address that was refused.
	Addr netip.Addr
	// Host is the name being connected to, when known and not Addr itself.
	Host string
	// Rule is the rule that refused it; zero when no allow rule contains
	// Addr.
	Rule Rule
}

func (e *RefusedError) Error() string {
	dest := e.Addr.String()
	if e.Host != "" && e.Host != dest {
		dest = e.Host + " (" + dest + ")"
	}
	switch {
	case !e.Rule.Prefix.IsValid():
		return fmt.Sprintf("the operator's egress policy refuses connecting to %s: it is in no network of %s; add it there if profiles may use it", dest, AllowFlag)
	case e.Rule.Why == DenyFlag:
		return fmt.Sprintf("the operator's egress policy refuses connecting to %s: it is in %s of %s", dest, e.Rule.Prefix, DenyFlag)
	}
	if e.Rule.Prefix.IsSingleIP() {
		return fmt.Sprintf("the operator's egress policy refuses connecting to %s: it is %s, always refused", dest, e.Rule.Why)
	}
	return fmt.Sprintf("the operator's egress policy refuses connecting to %s: it is in %s (%s), refused by default; a more specific network in %s reopens part of it",
		dest, e.Rule.Prefix, e.Rule.Why, AllowFlag)
}

// IsRefused reports whether err is, or wraps, a *RefusedError.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// Check returns a *RefusedError when the policy refuses addr, else nil.
// A nil Policy refuses nothing.
func (p *Policy) Check(addr netip.Addr) error {
	if p == nil {
		return nil
	}
	addr = addr.Unmap().WithZone("")
	var best *Rule
	for i := range p.rules {
		r := &p.rules[i]
		if !r.Prefix.Contains(addr) {
			continue
		}
		if best == nil || r.Prefix.Bits() > best.Prefix.Bits() || (r.Prefix.Bits() == best.Prefix.Bits() && !r.Allow) {
			best = r
		}
	}
	switch {
	case best != nil && best.Allow:
		return nil
	case best != nil:
		return &RefusedError{Addr: addr, Rule: *best}
	case p.hasAllow:
		return &RefusedError{Addr: addr}
	}
	return nil
}

// Control is a net.Dialer Control function: it checks the address a socket
// is about to connect to, after name resolution.
func (p *Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Control always sees a resolved IP:port; anything else is refused
		// rather than guessed at.
		return fmt.Errorf("egress policy: cannot read the address %q being connected to", address)
	}
	return p.Check(ap.Addr())
}

// CheckHost checks host (a URL's host, without port) when it is an IP
// literal; names are left to the dialer, which sees what they resolve to.
func (p *Policy) CheckHost(host string) error {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if err != nil {
		return nil
	}
	if err := p.Check(a); err != nil {
		var re *RefusedError
		if errors.As(err, &re) {
			re.Host = host
		}
		return err
	}
	return nil
}

// Dialer returns a dialer that refuses what p refuses.
func (p *Policy) Dialer(timeout, keepAlive time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: keepAlive, Control: p.Control}
}

// Secure makes tr connect only where p allows: its dialer checks every
// address it connects to, and, since through a proxy the operator dials
// only the proxy, a request's IP-literal destination is checked before it
// is handed to the proxy. A destination name that the proxy resolves is
// beyond the operator's sight: the proxy's own policy applies to it.
func (p *Policy) Secure(tr *http.Transport) *http.Transport {
	tr.DialContext = p.Dialer(30*time.Second, 30*time.Second).DialContext
	tr.DialTLSContext = nil
	tr.DialTLS = nil //nolint:staticcheck // cleared so that nothing dials around DialContext
	tr.Dial = nil    //nolint:staticcheck // idem
	if proxy := tr.Proxy; proxy != nil {
		tr.Proxy = func(req *http.Request) (*url.URL, error) {
			if err := p.CheckHost(req.URL.Hostname()); err != nil {
				return nil, err
			}
			return proxy(req)
		}
	}
	return tr
}

// MaxRedirects is how many redirects a client of a profile's server follows.
const MaxRedirects = 3

// RedirectError is a redirect a client refused to follow.
type RedirectError struct {
	// What names the server, e.g. "the SCEP server".
	What string
	// From is the scheme and host:port first asked.
	From string
	// To is the refused target's scheme and host:port, quoted, cleaned and
	// capped (it is the server's choice); empty when Max was exceeded.
	To string
	// Max is the number of redirects followed at most.
	Max int
}

func (e *RedirectError) Error() string {
	if e.To == "" {
		return fmt.Sprintf("%s redirected more than %d times; point the profile at the final URL", e.What, e.Max)
	}
	return fmt.Sprintf("%s at %s redirected to %s; only redirects to the same scheme and host are followed: point the profile at the final URL",
		e.What, e.From, e.To)
}

// SameOriginRedirects returns an http.Client CheckRedirect that follows at
// most max redirects (MaxRedirects when max <= 0), each to the scheme and
// host:port of the first request, and otherwise fails with a
// *RedirectError: a redirect elsewhere would carry credentials or a
// challenge there, or turn a profile into a fetcher of any URL. what names
// the server in errors ("the SCEP server", "the NDES admin page").
func SameOriginRedirects(what string, max int) func(*http.Request, []*http.Request) error {
	if max <= 0 {
		max = MaxRedirects
	}
	return func(req *http.Request, via []*http.Request) error {
		if len(via) == 0 {
			return nil
		}
		first := via[0].URL
		from := strings.ToLower(first.Scheme) + "://" + hostPort(first)
		if len(via) > max {
			return &RedirectError{What: what, From: from, Max: max}
		}
		if !strings.EqualFold(req.URL.Scheme, first.Scheme) || !strings.EqualFold(hostPort(req.URL), hostPort(first)) {
			to := servertext.Quote(req.URL.Scheme+"://"+hostPort(req.URL), 100)
			return &RedirectError{What: what, From: from, To: to, Max: max}
		}
		return nil
	}
}

// hostPort is u's host:port with the scheme's default port made explicit,
// so that http://h and http://h:80 compare equal.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch strings.ToLower(u.Scheme) {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// ScrubTransportError prepares an error of an HTTP round trip for a
// status or an Event: the refusals of this package are kept as they are
// (their words are ours), anything else goes through
// servertext.ScrubError, which drops what the peer sent.
func ScrubTransportError(err error) error {
	var re *RefusedError
	var rd *RedirectError
	if errors.As(err, &re) || errors.As(err, &rd) {
		return err
	}
	return servertext.ScrubError(err)
}
