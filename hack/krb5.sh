#!/usr/bin/env bash
# Installs MIT Kerberos's KDC and admin tools from Debian (krb5-kdc,
# krb5-admin-server), and libfaketime (faketime) for the clock skew test,
# when missing: the Kerberos tests of internal/ndes,
# test/ndes and cmd/scepctl start krb5kdc as a process of their own, with a
# realm, kdc.conf and database under a temporary directory on loopback, and
# create principals with kdb5_util and kadmin.local. Nothing here configures
# or starts the system's KDC: Debian's packages only bring the binaries (the
# postinst's own krb5kdc service is not started where there is no init).
#
# Without root or apt-get it says why it skipped; the tests then skip too,
# except under CI (CI set), where a missing KDC fails them.
#
# Usage: hack/krb5.sh
set -euo pipefail

# Debian installs the daemons in /usr/sbin, which a non-login PATH may lack.
export PATH="${PATH}:/usr/sbin:/sbin"

missing=()
for cmd in krb5kdc kdb5_util kadmin.local faketime; do
  command -v "${cmd}" >/dev/null 2>&1 || missing+=("${cmd}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "krb5: krb5kdc, kdb5_util, kadmin.local and faketime are installed"
  exit 0
fi

skip() {
  if [[ -n "${CI:-}" ]]; then
    echo "krb5: ${missing[*]} missing and not installed: $*; CI needs them for the Kerberos tests" >&2
    exit 1
  fi
  echo "krb5: ${missing[*]} missing and not installed: $*; the Kerberos tests will skip" >&2
  exit 0
}
[[ "$(uname -s)" == Linux ]] || skip "not Linux"
[[ "$(id -u)" -eq 0 ]] || skip "not root (run: sudo apt-get install -y --no-install-recommends krb5-kdc krb5-admin-server faketime)"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (install MIT Kerberos's KDC with this system's package manager)"

echo "krb5: installing krb5-kdc and krb5-admin-server from Debian (missing: ${missing[*]})..."
export DEBIAN_FRONTEND=noninteractive
# The packages ask for a default realm and its servers; the tests use their
# own realm and configuration files, so the answers only fill /etc/krb5.conf.
echo "krb5-config krb5-config/default_realm string EXAMPLE.TEST" | debconf-set-selections 2>/dev/null || true
echo "krb5-config krb5-config/add_servers_realm string EXAMPLE.TEST" | debconf-set-selections 2>/dev/null || true
echo "krb5-config krb5-config/add_servers boolean false" | debconf-set-selections 2>/dev/null || true
# A fresh machine's package index is empty or stale; this runs once per machine.
# Other installers (hack/node-deps.sh, a person) may hold dpkg's lock: wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends krb5-kdc krb5-admin-server faketime </dev/null
for cmd in krb5kdc kdb5_util kadmin.local faketime; do
  command -v "${cmd}" >/dev/null 2>&1 || { echo "krb5: ${cmd} still missing after apt-get install" >&2; exit 1; }
done
echo "krb5: $(dpkg-query -W -f='${Package} ${Version}' krb5-kdc) installed"
