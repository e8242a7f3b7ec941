#!/usr/bin/env bash
# Installs the SCEP clients that judge the NDES emulator in test/ndes:
# certmonger's scep-submit and strongSwan's pki (with the curl fetcher of
# libstrongswan-extra-plugins), from Debian. CI runs as root on a fresh
# machine that reaches Debian's packages, so `make test-deps` calls this;
# elsewhere it says why it skipped and those tests then skip with the same
# reason. With CI set, missing clients that cannot be installed are an
# error here, and the tests fail instead of skipping.
#
# Usage: hack/scep-clients.sh
set -euo pipefail

missing=()
[[ -x /usr/lib/certmonger/scep-submit ]] || missing+=(certmonger)
command -v pki >/dev/null 2>&1 || missing+=(strongswan-pki)
[[ -e /usr/lib/ipsec/plugins/libstrongswan-curl.so ]] || missing+=(libstrongswan-extra-plugins)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "scep-clients: certmonger's scep-submit and strongSwan's pki are installed"
  exit 0
fi

skip() {
  if [[ -n "${CI:-}" ]]; then
    echo "scep-clients: ${missing[*]} missing and not installed: $*; CI is set, so the outside-client tests need them" >&2
    exit 1
  fi
  echo "scep-clients: ${missing[*]} missing and not installed: $*; the outside-client tests in test/ndes will skip" >&2
  exit 0
}
[[ "$(uname -s)" == Linux ]] || skip "not Linux"
[[ "$(id -u)" -eq 0 ]] || skip "not root (run: sudo apt-get install -y --no-install-recommends ${missing[*]})"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (install ${missing[*]} with this system's package manager)"

echo "scep-clients: installing ${missing[*]} from Debian..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package index is empty or stale; this runs once per machine.
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
[[ -x /usr/lib/certmonger/scep-submit ]] || { echo "scep-clients: scep-submit still missing after apt-get install" >&2; exit 1; }
command -v pki >/dev/null 2>&1 || { echo "scep-clients: pki still missing after apt-get install" >&2; exit 1; }
[[ -e /usr/lib/ipsec/plugins/libstrongswan-curl.so ]] || { echo "scep-clients: strongSwan's curl plugin still missing after apt-get install" >&2; exit 1; }
echo "scep-clients: certmonger $(dpkg-query -W -f '${Version}' certmonger), strongSwan pki $(dpkg-query -W -f '${Version}' strongswan-pki)"
