#!/usr/bin/env bash
# Installs what the end-to-end test's node needs besides kubelet (which
# hack/envtest-binaries.sh builds): containerd, its ctr client and runc, from
# Debian. CI runs as root on a fresh machine that reaches Debian's packages,
# so `make test` calls this; elsewhere it says why it skipped and the node
# test then skips with the same reason (SCEP_NODE_E2E=required turns that
# skip into a failure).
#
# Usage: hack/node-deps.sh
set -euo pipefail

missing=()
for cmd in containerd ctr runc; do
  command -v "${cmd}" >/dev/null 2>&1 || missing+=("${cmd}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "node-deps: containerd, ctr and runc are installed"
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
[[ "$(id -u)" -eq 0 ]] || skip "not root (run: sudo apt-get install -y --no-install-recommends containerd runc)"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (install containerd and runc with this system's package manager)"

echo "node-deps: installing containerd and runc from Debian (missing: ${missing[*]})..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package index is empty or stale; this runs once per machine.
apt-get update -qq
apt-get install -y -qq --no-install-recommends containerd runc </dev/null
for cmd in containerd ctr runc; do
  command -v "${cmd}" >/dev/null 2>&1 || { echo "node-deps: ${cmd} still missing after apt-get install" >&2; exit 1; }
done
echo "node-deps: $(containerd --version | head -n1); $(runc --version | head -n1)"
