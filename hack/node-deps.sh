#!/usr/bin/env bash
# Installs what the end-to-end test's node needs besides kubelet (which
# hack/envtest-binaries.sh builds): containerd, its ctr client and runc, the
# CNI plugins (bridge, host-local, loopback, portmap; pod networking) and nft
# (kube-proxy's nftables mode), from Debian. CI runs as root on a fresh machine that reaches Debian's packages,
# so `make test` calls this; elsewhere it says why it skipped and the node
# test then skips with the same reason (SCEP_NODE_E2E=required turns that
# skip into a failure).
#
# Usage: hack/node-deps.sh
set -euo pipefail

# command or file -> the Debian package that provides it.
readonly CNI_DIR=/usr/lib/cni
declare -A package_of=(
  [containerd]=containerd [ctr]=containerd [runc]=runc [nft]=nftables
  ["${CNI_DIR}/bridge"]=containernetworking-plugins
  ["${CNI_DIR}/host-local"]=containernetworking-plugins
  ["${CNI_DIR}/loopback"]=containernetworking-plugins
)
have() {
  if [[ "$1" == /* ]]; then [[ -x "$1" ]]; else command -v "$1" >/dev/null 2>&1; fi
}

missing=()
packages=()
for thing in containerd ctr runc nft "${CNI_DIR}/bridge" "${CNI_DIR}/host-local" "${CNI_DIR}/loopback"; do
  if ! have "${thing}"; then
    missing+=("${thing}")
    case " ${packages[*]} " in *" ${package_of[${thing}]} "*) ;; *) packages+=("${package_of[${thing}]}") ;; esac
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "node-deps: containerd, ctr, runc, nft and the CNI plugins are installed"
  exit 0
fi

skip() {
  if [[ "${SCEP_NODE_E2E:-}" == required ]]; then
    echo "node-deps: ${missing[*]} missing and not installed: $*; SCEP_NODE_E2E=required needs them" >&2
    exit 1
  fi
  echo "node-deps: ${missing[*]} missing and not installed: $*; the node end-to-end test will skip" >&2
  exit 0
}
[[ "$(uname -s)" == Linux ]] || skip "not Linux"
[[ "$(id -u)" -eq 0 ]] || skip "not root (run: sudo apt-get install -y --no-install-recommends ${packages[*]})"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (install ${packages[*]} with this system's package manager)"

echo "node-deps: installing ${packages[*]} from Debian (missing: ${missing[*]})..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package index is empty or stale; this runs once per machine.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${packages[@]}" </dev/null
for thing in "${missing[@]}"; do
  have "${thing}" || { echo "node-deps: ${thing} still missing after apt-get install" >&2; exit 1; }
done
echo "node-deps: $(containerd --version | head -n1); $(runc --version | head -n1)"
