#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm), pinned by the scratch module
# hack/tools/helm, into BIN_DIR (default: <repo>/bin). test/chart runs it for
# `helm lint` and `helm template`; both work offline.
# The binary is rebuilt only when BIN_DIR/.helm-version does not match the pin.
# Usage: hack/helm.sh [BIN_DIR]
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
tools_dir="${script_dir}/tools/helm"

bin_dir="${1:-${repo_root}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"

bin="${bin_dir}/helm"
stamp="${bin_dir}/.helm-version"

go_bin="${GO:-go}"
if ! command -v "${go_bin}" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	go_bin=/usr/local/go/bin/go
fi

# mod_version MODULE prints MODULE's version as pinned in the scratch go.mod
# (either "require M v" on one line or "M v" inside a require block).
mod_version() {
	awk -v m="$1" '$1 == "require" && $2 == m {print $3} $1 == m {print $2}' "${tools_dir}/go.mod" | head -n1
}

# The version is read from the scratch module's go.mod, so bumping the pin there
# invalidates the stamp. go.sum is folded in too.
version="$(mod_version helm.sh/helm/v3)"
if [ -z "${version}" ]; then
	echo "helm.sh: cannot find helm.sh/helm/v3 in ${tools_dir}/go.mod" >&2
	exit 1
fi
# helm's default Capabilities.KubeVersion (used by `helm template` and
# `helm lint`) is 1.20 unless set at link time; helm's own Makefile derives
# it from its client-go version (v0.X.Y -> 1.X), and so do we.
client_go="$(mod_version k8s.io/client-go)"
k8s_minor="$(printf '%s' "${client_go#v}" | cut -d. -f2)"
if ! [[ "${k8s_minor}" =~ ^[0-9]+$ ]]; then
	echo "helm.sh: cannot derive the Kubernetes version from k8s.io/client-go '${client_go}' in ${tools_dir}/go.mod" >&2
	exit 1
fi
k8s_major=1
# Bump recipe when the build command below changes, to force a rebuild.
recipe=1
want="helm.sh/helm/v3 ${version} kube=${k8s_major}.${k8s_minor} gosum=$(cksum <"${tools_dir}/go.sum" | awk '{print $1}') recipe=${recipe}"

if [ -x "${bin}" ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
	echo "helm ${version} already built: ${bin}"
	exit 0
fi

echo "building helm ${version} into ${bin} (first build takes about 80s)..."
start="$(date +%s)"
tmp="${bin}.tmp.$$"
trap 'rm -f "${tmp}"' EXIT
ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${version}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
	ldflags+=" -X ${pkg}.k8sVersionMajor=${k8s_major} -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done
(
	cd "${tools_dir}"
	# Building from the scratch module's directory with GOWORK=off uses its
	# go.mod, never the root module's; -mod=readonly never rewrites go.mod/go.sum.
	GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly" CGO_ENABLED=0 \
		"${go_bin}" build -trimpath -ldflags "${ldflags}" \
		-o "${tmp}" helm.sh/helm/v3/cmd/helm
)
mv -f "${tmp}" "${bin}"
printf '%s\n' "${want}" >"${stamp}"
echo "built ${bin} in $(( $(date +%s) - start ))s"
"${bin}" version --short 2>/dev/null || true
