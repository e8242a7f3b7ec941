package ndes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/iana/errorcode"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/krberror"

	"github.com/scep-operator/scep-operator/internal/egress"
)

// Kerberos is what AuthNegotiate needs besides Config's Username and
// Password: where the KDCs are, which service principal the admin page
// runs as, and, instead of a password, a keytab. gokrb5
// (github.com/jcmturner/gokrb5/v8) does the protocol: a pure-Go Kerberos 5
// and SPNEGO client that needs no system krb5 library or credential cache,
// so every profile keeps its own principal in memory.
type Kerberos struct {
	// Realm is the Kerberos realm, e.g. CORP.EXAMPLE (an AD domain's DNS
	// name in capitals). Empty means the realm of a user@REALM Username,
	// else Krb5Conf's default_realm.
	Realm string
	// KDCs are the realm's KDCs (domain controllers), host or host:port
	// (port 88 by default). Empty means Krb5Conf's.
	KDCs []string
	// Krb5Conf is the content of a krb5.conf, for realms, KDCs and
	// settings beyond Realm and KDCs. KDCs are never looked up in DNS: the
	// egress policy must see every address before it is used.
	Krb5Conf string
	// SPN is the admin page's service principal; empty means HTTP/<host>
	// of the URL (without port), as Windows clients derive it.
	SPN string
	// Keytab authenticates Username instead of Config.Password (a keytab
	// file's bytes, e.g. from ktpass or ktutil). With a keytab no NTLM
	// fallback is possible: NTLM needs the password.
	Keytab []byte
	// AllowNTLMFallback lets the client use NTLM, with Username and
	// Password, where Kerberos cannot be tried: IIS offers no Negotiate, a
	// KDC cannot be reached, or the KDC does not know the SPN. A refusal
	// of the credentials by the KDC never falls back: the account is
	// locked out after a few wrong passwords, and NTLM would only count
	// one more.
	AllowNTLMFallback bool
}

// kerberosLogin is Kerberos resolved against Config: what to log in as,
// where, and to whom.
type kerberosLogin struct {
	user, realm, spn string
	conf             *config.Config
	keytab           *keytab.Keytab
	password         string
	fallback         bool
}

// newKerberosLogin checks the Kerberos settings of cfg for the admin page
// at host and resolves realm, KDCs and SPN; KDCs given as addresses are
// checked against policy now, names before every use (see checkKDCs).
func newKerberosLogin(cfg Config, host string, policy *egress.Policy) (*kerberosLogin, error) {
	k := cfg.Kerberos
	if k == nil {
		k = &Kerberos{}
	}
	l := &kerberosLogin{fallback: k.AllowNTLMFallback, password: cfg.Password}
	conf := config.New()
	if k.Krb5Conf != "" {
		var err error
		if conf, err = config.NewFromString(k.Krb5Conf); err != nil {
			return nil, fmt.Errorf("krb5.conf does not parse: %v", err)
		}
	}
	// The egress policy must see every KDC: none come from DNS SRV
	// records, and an explicit list is all there is.
	conf.LibDefaults.DNSLookupKDC = false
	conf.LibDefaults.DNSLookupRealm = false
	// TCP only: AD's KDCs answer large (PAC-carrying) replies over TCP
	// anyway, and one transport is one failure mode to explain.
	conf.LibDefaults.UDPPreferenceLimit = 1

	l.user, l.realm = kerberosPrincipal(cfg.Username)
	switch {
	case k.Realm != "":
		l.realm = strings.ToUpper(k.Realm)
	case l.realm == "":
		l.realm = conf.LibDefaults.DefaultRealm
	}
	if l.realm == "" {
		return nil, errors.New("Kerberos needs a realm: give it, a user@REALM user name, or a krb5.conf with default_realm")
	}
	if conf.LibDefaults.DefaultRealm == "" {
		conf.LibDefaults.DefaultRealm = l.realm
	}
	if len(k.KDCs) > 0 {
		kdcs := make([]string, 0, len(k.KDCs))
		for _, a := range k.KDCs {
			addr, err := kdcAddress(a)
			if err != nil {
				return nil, err
			}
			kdcs = append(kdcs, addr)
		}
		conf.Realms = setRealmKDCs(conf.Realms, l.realm, kdcs)
	}
	if err := checkKDCs(conf, policy); err != nil {
		return nil, err
	}
	if _, kdcs, err := conf.GetKDCs(l.realm, true); err != nil || len(kdcs) == 0 {
		return nil, fmt.Errorf("no KDC for realm %s: list its KDCs, or give a krb5.conf whose [realms] names them", l.realm)
	}

	l.spn = k.SPN
	if l.spn == "" {
		l.spn = "HTTP/" + strings.ToLower(strings.TrimSuffix(host, "."))
	}
	if !strings.Contains(l.spn, "/") {
		return nil, fmt.Errorf("service principal %q: must be service/host, e.g. HTTP/ndes.corp.example", l.spn)
	}
	if len(k.Keytab) > 0 {
		kt := keytab.New()
		if err := kt.Unmarshal(k.Keytab); err != nil {
			return nil, fmt.Errorf("the keytab does not parse: %v", err)
		}
		l.keytab = kt
		l.fallback = l.fallback && cfg.Password != ""
	} else if cfg.Password == "" {
		return nil, errors.New("Kerberos needs a password or a keytab")
	}
	l.conf = conf
	return l, nil
}

// kerberosPrincipal splits a user name as NDES admins write it: user@REALM,
// DOMAIN\user (the NetBIOS domain is not the realm: the realm comes from
// elsewhere) or user.
func kerberosPrincipal(username string) (user, realm string) {
	if _, u, ok := strings.Cut(username, `\`); ok {
		return u, ""
	}
	if i := strings.LastIndex(username, "@"); i > 0 {
		return username[:i], strings.ToUpper(username[i+1:])
	}
	return username, ""
}

// kdcAddress checks one KDC entry and adds Kerberos's port 88 if none.
func kdcAddress(a string) (string, error) {
	a = strings.TrimSpace(a)
	if a == "" || strings.ContainsAny(a, " /\t") {
		return "", fmt.Errorf("KDC %q: must be host or host:port", a)
	}
	if host, port, err := net.SplitHostPort(a); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
			return "", fmt.Errorf("KDC %q: bad port", a)
		}
		return a, nil
	}
	if strings.Count(a, ":") > 1 && !strings.HasPrefix(a, "[") {
		return net.JoinHostPort(a, "88"), nil // a bare IPv6 address
	}
	return net.JoinHostPort(strings.Trim(a, "[]"), "88"), nil
}

// setRealmKDCs makes kdcs the KDC list of realm, adding the realm if the
// configuration had none.
func setRealmKDCs(realms []config.Realm, realm string, kdcs []string) []config.Realm {
	for i := range realms {
		if strings.EqualFold(realms[i].Realm, realm) {
			realms[i].KDC = kdcs
			return realms
		}
	}
	return append(realms, config.Realm{Realm: realm, KDC: kdcs})
}

// checkKDCs refuses a configuration naming a KDC the egress policy refuses.
// KDCs given as names are checked by name here (deny-listed names); their
// addresses are checked by resolvedKDCs before each login.
func checkKDCs(conf *config.Config, policy *egress.Policy) error {
	for _, r := range conf.Realms {
		for _, kdc := range r.KDC {
			if err := policy.CheckHost(kdcHost(kdc)); err != nil {
				return fmt.Errorf("KDC %s of realm %s: %w", kdc, r.Realm, err)
			}
		}
	}
	return nil
}

// kdcHost is the host part of a KDC entry (host or host:port).
func kdcHost(kdc string) string {
	host, _, err := net.SplitHostPort(kdc)
	if err != nil {
		host = kdc
	}
	return strings.Trim(host, "[]")
}

// resolvedKDCs returns a copy of conf whose KDC names are replaced by the
// addresses they resolve to now, each checked against policy. gokrb5 dials
// KDCs itself, past the policy's dialer; handing it addresses rather than
// names means it dials exactly what was checked, so a name that resolves to
// a refused address after the check (DNS rebinding) cannot reach it. A name
// that does not resolve is left as it is: the login then says no KDC
// answered.
func resolvedKDCs(ctx context.Context, conf *config.Config, policy *egress.Policy) (*config.Config, error) {
	if err := checkKDCs(conf, policy); err != nil {
		return nil, err
	}
	out := *conf
	out.Realms = make([]config.Realm, len(conf.Realms))
	for i, r := range conf.Realms {
		r.KDC = nil
		for _, kdc := range conf.Realms[i].KDC {
			host := kdcHost(kdc)
			if _, err := netip.ParseAddr(host); err == nil {
				r.KDC = append(r.KDC, kdc)
				continue
			}
			port := "88"
			if _, p, err := net.SplitHostPort(kdc); err == nil {
				port = p
			}
			addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			if err != nil {
				r.KDC = append(r.KDC, kdc) // unreachable now; the exchange says so
				continue
			}
			for _, a := range addrs {
				if err := policy.Check(a.Unmap()); err != nil {
					return nil, fmt.Errorf("KDC %s of realm %s: %w", kdc, r.Realm, err)
				}
				r.KDC = append(r.KDC, net.JoinHostPort(a.Unmap().String(), port))
			}
		}
		out.Realms[i] = r
	}
	return &out, nil
}

// newClient returns a gokrb5 client for the login. It is made per fetch,
// like the NTLM handshake: a ticket is two KDC round trips, and a changed
// password or keytab takes effect on the next fetch.
func (l *kerberosLogin) newClient(conf *config.Config) *client.Client {
	// FAST is off: gokrb5 does not implement it, and AD does not ask for
	// it unless armoring is required (then Kerberos from here cannot work).
	if l.keytab != nil {
		return client.NewWithKeytab(l.user, l.realm, l.keytab, conf, client.DisablePAFXFAST(true))
	}
	return client.NewWithPassword(l.user, l.realm, l.password, conf, client.DisablePAFXFAST(true))
}

// principal is the client principal as the KDC sees it.
func (l *kerberosLogin) principal() string { return l.user + "@" + l.realm }

// KerberosError is a Kerberos failure that is not a refusal of the
// credentials (those are *AuthError): a KDC out of reach, clocks too far
// apart, a service principal the KDC does not know.
type KerberosError struct {
	// Code is the KRB-ERROR code from the KDC; 0 when none came.
	Code int32
	// Realm is the realm asked.
	Realm string
	// Unreachable is set when no KDC of the realm answered.
	Unreachable bool
	// Detail says what happened and what to check.
	Detail string
}

// Error names the realm and what to do.
func (e *KerberosError) Error() string {
	return fmt.Sprintf("Kerberos (realm %s): %s", e.Realm, e.Detail)
}

// Temporary reports whether asking again later may help: a KDC that did
// not answer may be back.
func (e *KerberosError) Temporary() bool { return e.Unreachable }

// Timeout is Temporary, for callers that ask net.Error's question.
func (e *KerberosError) Timeout() bool { return e.Unreachable }

// IsKerberosError reports whether err is, or wraps, a *KerberosError.
func IsKerberosError(err error) bool {
	var ke *KerberosError
	return errors.As(err, &ke)
}

// krbErrorCode finds the KRB-ERROR code in a gokrb5 error. gokrb5 flattens
// the KRBError it received into the text of a krberror.Krberror ("KRB
// Error: (24) KDC_ERR_PREAUTH_FAILED ..."), so its code is read back from
// there.
var krbErrorCode = regexp.MustCompile(`KRB Error: \((\d{1,3})\)`)

// refusal is our reading of a KDC's refusal of the account, and what to do.
type refusal struct{ detail, remedy string }

// kdcRefusals are the KRB-ERROR codes by which a KDC refuses the account
// itself (the profile's CredentialsRejected); keytab, when set, is the
// reading for a keytab login.
var kdcRefusals = map[int32]struct{ account, keytab refusal }{
	errorcode.KDC_ERR_PREAUTH_FAILED: {
		account: refusal{"the KDC refused the password", "check the password in the credentials Secret; every wrong try counts towards the account's lockout"},
		keytab:  refusal{"the KDC refused the keytab's key", "the keytab is out of date (the password changed, or its kvno or encryption types are not the account's): export it again"},
	},
	errorcode.KDC_ERR_C_PRINCIPAL_UNKNOWN: {account: refusal{"the KDC does not know the principal", "check the user name (user or user@REALM) and the realm"}},
	errorcode.KDC_ERR_KEY_EXPIRED:         {account: refusal{"the account's password has expired", "set a new password on the account (or make it never expire, as service accounts usually are) and update the credentials Secret"}},
	errorcode.KDC_ERR_CLIENT_REVOKED:      {account: refusal{"the account is disabled or locked out", "enable or unlock the account in the directory"}},
	errorcode.KDC_ERR_NAME_EXP:            {account: refusal{"the account has expired", "extend the account's expiry date in the directory"}},
	errorcode.KDC_ERR_POLICY:              {account: refusal{"the KDC's policy refuses the account a ticket", "check the account's logon restrictions (logon hours, allowed workstations, disabled tickets)"}},
}

// classifyKerberos turns a gokrb5 failure of the login or ticket request
// into an *AuthError (the KDC refused the account: the profile's
// credentials are wrong) or a *KerberosError (anything else). gokrb5's own
// text is kept out: it repeats principals and internals an admin cannot
// act on; the code and our reading of it are what matter.
func (l *kerberosLogin) classifyKerberos(err error, stage string) error {
	var kerr krberror.Krberror
	isKrb := errors.As(err, &kerr)
	var code int32
	if m := krbErrorCode.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		code = int32(n)
	}
	who := l.principal()
	refused := func(detail, remedy string) error {
		return &AuthError{User: who, Detail: detail + ": " + errorcode.Lookup(code), Remedy: remedy, Kerberos: true}
	}
	if r, ok := kdcRefusals[code]; ok {
		if l.keytab != nil && r.keytab.detail != "" {
			r.account = r.keytab
		}
		return refused(r.account.detail, r.account.remedy)
	}
	switch code {
	case errorcode.KRB_AP_ERR_SKEW:
		return &KerberosError{Code: code, Realm: l.realm, Detail: "this host's clock and the KDC's differ by more than the KDC allows (5 minutes by default): synchronise the node's clock (NTP) with the domain's"}
	case errorcode.KDC_ERR_S_PRINCIPAL_UNKNOWN:
		return &KerberosError{Code: code, Realm: l.realm, Detail: fmt.Sprintf("the KDC knows no service principal %s: register it on the account IIS runs the admin page as (setspn -S %s ACCOUNT), or name the right one in servicePrincipalName", l.spn, l.spn)}
	case errorcode.KDC_ERR_ETYPE_NOSUPP:
		return &KerberosError{Code: code, Realm: l.realm, Detail: "the KDC and this client share no encryption type (the client offers AES and RC4): enable AES for the account"}
	case 0:
	default:
		return &KerberosError{Code: code, Realm: l.realm, Detail: fmt.Sprintf("%s failed: the KDC answered %s", stage, errorcode.Lookup(code))}
	}
	if isKrb && kerr.RootCause == krberror.NetworkingError || strings.Contains(err.Error(), "communicate with KDC") {
		_, kdcs, _ := l.conf.GetKDCs(l.realm, true)
		var list []string
		for i := 1; i <= len(kdcs); i++ {
			list = append(list, kdcs[i])
		}
		return &KerberosError{Realm: l.realm, Unreachable: true, Detail: fmt.Sprintf("no KDC answered (%s): check that they run and that this host reaches them on TCP", strings.Join(list, ", "))}
	}
	if strings.Contains(err.Error(), "clock skew") {
		return &KerberosError{Realm: l.realm, Detail: "this host's clock and the KDC's differ by more than 5 minutes: synchronise the node's clock (NTP) with the domain's"}
	}
	if strings.Contains(err.Error(), "password/keytab incorrect") || strings.Contains(err.Error(), "Decrypting_Error") {
		// A KDC that does not ask for pre-authentication sends a reply
		// encrypted with the account's key: a wrong password shows here.
		return refused("the KDC's reply does not decrypt with the account's password or keytab", "check the password or keytab in the credentials Secret")
	}
	return &KerberosError{Realm: l.realm, Detail: stage + " failed: " + firstLine(err.Error())}
}

// firstLine keeps gokrb5's innermost statement, the one that says what went
// wrong, bounded.
func firstLine(s string) string {
	if i := strings.LastIndex(s, " < "); i >= 0 {
		s = s[i+3:]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
