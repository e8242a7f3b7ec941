// Package mitkdc runs a real MIT Kerberos KDC (Debian's krb5-kdc) for
// tests: krb5kdc as a process of the test's own, with a realm, kdc.conf,
// krb5.conf and database under a temporary directory, listening on a free
// loopback port (TCP and UDP). Principals are created with kadmin.local,
// as an administrator would; nothing of the system's Kerberos
// configuration is read or touched.
//
// hack/krb5.sh installs the binaries (make test-deps, as root). Without
// them Start skips the test, or fails it when CI is set, so that CI never
// passes by skipping.
package mitkdc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scep-operator/scep-operator/test/freeport"
)

// DefaultRealm is the realm Start creates unless Options names another.
const DefaultRealm = "CORP.EXAMPLE.TEST"

// Options configure a KDC.
type Options struct {
	// Realm is the realm's name; empty means DefaultRealm.
	Realm string
	// ClockOffset runs the KDC with its clock shifted by this much (through
	// libfaketime, Debian's faketime package), to make clock skew real.
	ClockOffset time.Duration
	// MaxSkew is the KDC's clockskew (how far a client's clock may be off);
	// zero means Kerberos's 5 minutes.
	MaxSkew time.Duration
}

// KDC is a running krb5kdc.
type KDC struct {
	// Realm is the realm's name.
	Realm string
	// Addr is the host:port it listens on, TCP and UDP.
	Addr string
	// Dir holds its configuration, database and log.
	Dir string

	opts Options
	env  []string
	bins map[string]string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// binaries are the programs a KDC needs, looked up in PATH and /usr/sbin
// (Debian's place for them, often missing from a non-login PATH).
var binaries = []string{"krb5kdc", "kdb5_util", "kadmin.local"}

// Available reports whether the MIT KDC's programs are installed, and
// which one is missing when not.
func Available() (map[string]string, error) {
	bins := map[string]string{}
	for _, b := range binaries {
		p, err := exec.LookPath(b)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, b)); serr == nil {
					p, err = filepath.Join(dir, b), nil
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s not found (install krb5-kdc and krb5-admin-server: hack/krb5.sh)", b)
		}
		bins[b] = p
	}
	return bins, nil
}

// Require skips t when the KDC's programs are missing, or fails it under
// CI. what says what else is needed, for the message.
func Require(t testing.TB) map[string]string {
	t.Helper()
	bins, err := Available()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("MIT Kerberos KDC: %v; CI must run the Kerberos tests", err)
		}
		t.Skipf("MIT Kerberos KDC: %v", err)
	}
	return bins
}

// fakeTimeLib is libfaketime (Debian's faketime package), which shifts a
// process's clock; "" when it is not installed.
func fakeTimeLib() string {
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start creates a realm under a temporary directory and starts its KDC;
// it is stopped when the test ends.
func Start(t testing.TB, opts Options) *KDC {
	t.Helper()
	bins := Require(t)
	if opts.ClockOffset != 0 && fakeTimeLib() == "" {
		const msg = "libfaketime not found (Debian's faketime package: hack/krb5.sh installs it)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must run the clock skew test")
		}
		t.Skip(msg)
	}
	if opts.Realm == "" {
		opts.Realm = DefaultRealm
	}
	k := &KDC{Realm: opts.Realm, Dir: t.TempDir(), opts: opts, bins: bins}
	port, err := freeport.LoopbackTCPAndUDP()
	if err != nil {
		t.Fatalf("mitkdc: %v", err)
	}
	k.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	skew := int(opts.MaxSkew / time.Second)
	if skew <= 0 {
		skew = 300
	}
	kdcConf := fmt.Sprintf(`[kdcdefaults]
 kdc_listen = %[1]s
 kdc_tcp_listen = %[1]s
[realms]
 %[2]s = {
  database_name = %[3]s/principal
  key_stash_file = %[3]s/stash
  acl_file = %[3]s/kadm5.acl
  max_life = 10h
  max_renewable_life = 1d
  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
 }
[logging]
 kdc = FILE:%[3]s/kdc.log
 admin_server = FILE:%[3]s/kadmin.log
`, k.Addr, k.Realm, k.Dir)
	if err := os.WriteFile(filepath.Join(k.Dir, "kdc.conf"), []byte(kdcConf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.Dir, "krb5.conf"), []byte(k.Krb5Conf()+fmt.Sprintf("[libdefaults]\n clockskew = %d\n", skew)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.Dir, "kadm5.acl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k.env = append(os.Environ(),
		"KRB5_CONFIG="+filepath.Join(k.Dir, "krb5.conf"),
		"KRB5_KDC_PROFILE="+filepath.Join(k.Dir, "kdc.conf"),
		"KRB5CCNAME=FILE:"+filepath.Join(k.Dir, "ccache"),
	)
	if _, err := k.run(bins["kdb5_util"], "create", "-s", "-r", k.Realm, "-P", "master-key-of-a-test-realm", "-W"); err != nil {
		t.Fatalf("mitkdc: creating the realm: %v", err)
	}
	if err := k.Start(); err != nil {
		t.Fatalf("mitkdc: %v", err)
	}
	t.Cleanup(k.Stop)
	return k
}

// Krb5Conf is a krb5.conf naming this realm and its KDC, as a client
// would be given it.
func (k *KDC) Krb5Conf() string {
	return fmt.Sprintf("[libdefaults]\n default_realm = %s\n dns_lookup_kdc = false\n[realms]\n %s = {\n  kdc = %s\n }\n", k.Realm, k.Realm, k.Addr)
}

// run runs one of the KDC's tools with the realm's configuration.
func (k *KDC) run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = k.env
	cmd.Dir = k.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Admin runs one kadmin.local query (e.g. "addprinc -pw PW user") and fails
// t if it fails.
func (k *KDC) Admin(t testing.TB, query string) string {
	t.Helper()
	out, err := k.run(k.bins["kadmin.local"], "-r", k.Realm, "-q", query)
	if err != nil {
		t.Fatalf("mitkdc: %v", err)
	}
	// kadmin.local reports many failures on stdout with exit status 0.
	for _, bad := range []string{"while creating", "while modifying", "while adding", "while deleting", "while changing", "Principal does not exist"} {
		if strings.Contains(out, bad) {
			t.Fatalf("mitkdc: kadmin.local -q %q: %s", query, out)
		}
	}
	return out
}

// AddUser creates a user principal with password, requiring
// pre-authentication as Active Directory does; extra are further addprinc
// options (e.g. "-allow_tix", "-pwexpire yesterday").
func (k *KDC) AddUser(t testing.TB, name, password string, extra ...string) {
	t.Helper()
	k.Admin(t, fmt.Sprintf("addprinc -pw %s +requires_preauth %s %s", password, strings.Join(extra, " "), name))
}

// AddService creates a service principal (e.g. HTTP/host) with a random
// key and returns a keytab holding it, as ktpass or ktadd would write it.
func (k *KDC) AddService(t testing.TB, name string) []byte {
	t.Helper()
	k.Admin(t, "addprinc -randkey "+name)
	return k.Keytab(t, name)
}

// Keytab exports principal's current keys into a new keytab and returns
// its bytes, without changing them (-norandkey), so a password still
// works beside the keytab.
func (k *KDC) Keytab(t testing.TB, principal string) []byte {
	t.Helper()
	f, err := os.CreateTemp(k.Dir, "keytab-*")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	_ = os.Remove(f.Name()) // ktadd writes a new file
	k.Admin(t, fmt.Sprintf("ktadd -k %s -norandkey %s", f.Name(), principal))
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Start starts krb5kdc (again, after Stop) and waits until it answers on
// TCP.
func (k *KDC) Start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd != nil {
		return nil
	}
	// -n: stay in the foreground, a child of the test that Stop can end.
	cmd := exec.Command(k.bins["krb5kdc"], "-n", "-r", k.Realm, "-P", filepath.Join(k.Dir, "krb5kdc.pid"))
	cmd.Env = k.env
	if k.opts.ClockOffset != 0 {
		// libfaketime's relative offset, e.g. "-2h" or "+7200s".
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+fakeTimeLib(), fmt.Sprintf("FAKETIME=%+ds", int(k.opts.ClockOffset/time.Second)), "FAKETIME_DONT_RESET=1")
	}
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting krb5kdc: %w", err)
	}
	// exited is closed when krb5kdc has ended, waitErr then says how.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", k.Addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("krb5kdc exited (%v): %s%s", waitErr, out.String(), k.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("krb5kdc did not listen on %s within 15s: %s%s", k.Addr, out.String(), k.log())
		}
	}
	k.cmd = cmd
	go func() {
		<-exited
		k.mu.Lock()
		if k.cmd == cmd {
			k.cmd = nil
		}
		k.mu.Unlock()
	}()
	return nil
}

// Stop ends krb5kdc (the KDC is down: clients cannot reach it) and waits
// until its port refuses connections.
func (k *KDC) Stop() {
	k.mu.Lock()
	cmd := k.cmd
	k.cmd = nil
	k.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", k.Addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		_ = c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns the KDC's log, for a failing test's message.
func (k *KDC) Log() string { return k.log() }

func (k *KDC) log() string {
	b, _ := os.ReadFile(filepath.Join(k.Dir, "kdc.log"))
	return string(b)
}
