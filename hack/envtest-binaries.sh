#!/usr/bin/env bash
# Builds the real control-plane binaries that envtest runs (kube-apiserver,
# etcd, kubectl; optionally kubelet) from the Go module proxy, because
# setup-envtest's download site is not reachable from our build machines.
#
# Usage: hack/envtest-binaries.sh [BIN_DIR] [component...]
#
#   BIN_DIR     where the binaries go (default: <repo>/bin). A first argument
#               that is exactly a component name is taken as a component.
#   component   kube-apiserver, etcd, kubectl, kubelet, kube-controller-manager,
#               kube-scheduler, kube-proxy
#               (default: kube-apiserver etcd kubectl)
#
# Then: KUBEBUILDER_ASSETS=<BIN_DIR> go test ./...
#
# Versions are pinned in hack/tools/envtest/go.mod (a separate module; the
# root go.mod is never used for these builds). A binary is rebuilt only when
# it is missing or when BIN_DIR/.envtest-versions does not record the pinned
# version for it. A cold build of all three takes 5-13 minutes on 2 cores
# (depending on load), peaks at 2.4 GB of memory and fills about 4 GB of Go
# caches; a run with everything up to date takes well under a second.
set -euo pipefail

readonly ALL_COMPONENTS="kube-apiserver etcd kubectl kubelet kube-controller-manager kube-scheduler kube-proxy"
readonly DEFAULT_COMPONENTS="kube-apiserver etcd kubectl"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly TOOLS_DIR="${REPO_ROOT}/hack/tools/envtest"

usage() {
  sed -n '6,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

is_component() {
  case " ${ALL_COMPONENTS} " in *" $1 "*) return 0 ;; esac
  return 1
}

if [[ $# -gt 0 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then
  usage
  exit 0
fi

BIN_DIR="${REPO_ROOT}/bin"
if [[ $# -gt 0 ]] && ! is_component "$1"; then
  [[ -n "$1" ]] && BIN_DIR="$1"
  shift
fi
components=("$@")
if [[ ${#components[@]} -eq 0 ]]; then
  read -r -a components <<<"${DEFAULT_COMPONENTS}"
fi
for c in "${components[@]}"; do
  if ! is_component "$c"; then
    echo "envtest-binaries: unknown component '${c}' (known: ${ALL_COMPONENTS})" >&2
    usage >&2
    exit 2
  fi
done

mkdir -p "${BIN_DIR}"
BIN_DIR="$(cd "${BIN_DIR}" && pwd)" # relative to the caller's cwd, made absolute
readonly BIN_DIR
readonly STAMP="${BIN_DIR}/.envtest-versions"

# Pinned versions, read from the tools module's go.mod so they cannot drift.
module_version() {
  local v
  v="$(awk -v m="$1" '$1 == m && $2 ~ /^v/ && $3 != "=>" { print $2; exit }' "${TOOLS_DIR}/go.mod")"
  if [[ -z "${v}" ]]; then
    echo "envtest-binaries: ${1} not found in ${TOOLS_DIR}/go.mod" >&2
    exit 1
  fi
  echo "${v}"
}
K8S_VERSION="$(module_version k8s.io/kubernetes)"
ETCD_VERSION="$(module_version go.etcd.io/etcd/server/v3)"
readonly K8S_VERSION ETCD_VERSION

# The staging modules are replaced with v0.<minor>.<patch> of the same release;
# refuse to build a kube-apiserver from mismatched halves.
staging_version="v0.${K8S_VERSION#v1.}"
if awk '$2 == "=>" && $1 ~ /^k8s\.io\// { print $4 }' "${TOOLS_DIR}/go.mod" | grep -qvx -- "${staging_version}"; then
  echo "envtest-binaries: ${TOOLS_DIR}/go.mod: every k8s.io staging replace must be ${staging_version} to match k8s.io/kubernetes ${K8S_VERSION}" >&2
  exit 1
fi

k8s_major_minor="${K8S_VERSION#v}"
k8s_major="${k8s_major_minor%%.*}"
k8s_minor="${k8s_major_minor#*.}"
k8s_minor="${k8s_minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  k8s_ldflags+=" -X ${pkg}.gitMajor=${k8s_major}"
  k8s_ldflags+=" -X ${pkg}.gitMinor=${k8s_minor}"
  k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
done
readonly k8s_ldflags

# component -> "package|version|extra ldflags|estimate"
spec() {
  case "$1" in
    kube-apiserver) echo "k8s.io/kubernetes/cmd/kube-apiserver|${K8S_VERSION}|${k8s_ldflags}|about 5 min on a cold cache, up to 12 on a busy machine" ;;
    kubectl) echo "k8s.io/kubernetes/cmd/kubectl|${K8S_VERSION}|${k8s_ldflags}|about 30 s after kube-apiserver, a few min alone on a cold cache" ;;
    kubelet) echo "k8s.io/kubernetes/cmd/kubelet|${K8S_VERSION}|${k8s_ldflags}|about 5-10 min on a cold cache" ;;
    kube-controller-manager) echo "k8s.io/kubernetes/cmd/kube-controller-manager|${K8S_VERSION}|${k8s_ldflags}|about 4 min on a cold cache, 1-2 after kube-apiserver" ;;
    kube-scheduler) echo "k8s.io/kubernetes/cmd/kube-scheduler|${K8S_VERSION}|${k8s_ldflags}|about 3.5 min on a cold cache, 1-2 after kube-apiserver" ;;
    kube-proxy) echo "k8s.io/kubernetes/cmd/kube-proxy|${K8S_VERSION}|${k8s_ldflags}|about 3 min on a cold cache, 1-2 after kube-apiserver" ;;
    etcd) echo "go.etcd.io/etcd/server/v3|${ETCD_VERSION}||under a minute on a cold cache" ;;
  esac
}

stamped_version() {
  [[ -f "${STAMP}" ]] || return 0
  awk -v c="$1" '$1 == c { v = $2 } END { if (v != "") print v }' "${STAMP}"
}

record_version() {
  local tmp="${STAMP}.tmp.$$"
  { [[ -f "${STAMP}" ]] && awk -v c="$1" '$1 != c' "${STAMP}"; echo "$1 $2"; } >"${tmp}"
  mv -f "${tmp}" "${STAMP}"
}

# Serialize concurrent runs (e.g. make -j) so the same binary is not built twice.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${BIN_DIR}/.envtest-binaries.lock"
  if ! flock -n 9; then
    echo "envtest-binaries: waiting for another build in ${BIN_DIR}..."
    flock 9
  fi
fi

# Build in the tools module only: no workspace, no vendor directory, no
# cross-compilation settings inherited from the caller; these binaries run here.
export GOWORK=off
export CGO_ENABLED=0
GOOS="$(go env GOHOSTOS)"
GOARCH="$(go env GOHOSTARCH)"
export GOOS GOARCH
unset GOBIN

for c in "${components[@]}"; do
  IFS='|' read -r pkg version ldflags estimate <<<"$(spec "$c")"
  out="${BIN_DIR}/${c}"
  if [[ -x "${out}" && "$(stamped_version "$c")" == "${version}" ]]; then
    echo "envtest-binaries: ${c} ${version} is up to date"
    continue
  fi
  echo "envtest-binaries: building ${c} ${version} (${estimate})..."
  start=${SECONDS}
  tmp_out="${BIN_DIR}/.${c}.tmp.$$"
  trap 'rm -f "${tmp_out}"' EXIT
  (
    cd "${TOOLS_DIR}"
    # -mod=readonly on the command line overrides any -mod in GOFLAGS.
    go build -mod=readonly -trimpath -ldflags "-s -w${ldflags}" -o "${tmp_out}" "${pkg}"
  )
  mv -f "${tmp_out}" "${out}"
  trap - EXIT
  record_version "$c" "${version}"
  echo "envtest-binaries: built ${out} in $((SECONDS - start))s"
done
