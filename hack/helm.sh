#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm), pinned by the scratch module
# hack/tools/helm, into BIN_DIR (default: <repo>/bin). test/chart runs it for
# `helm lint` and `helm template`; both work offline.
# The binary is rebuilt only when BIN_DIR/.helm-version does not match the pin.
# Usage: hack/helm.sh [BIN_DIR]
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tool_init helm helm "${1:-}"

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
want="$(tool_stamp "helm.sh/helm/v3 ${version} kube=${k8s_major}.${k8s_minor}") recipe=${recipe}"
tool_up_to_date "${want}" "${version}"

echo "building helm ${version} into ${bin} (first build takes about 80s)..."
ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=${version}"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
	ldflags+=" -X ${pkg}.k8sVersionMajor=${k8s_major} -X ${pkg}.k8sVersionMinor=${k8s_minor}"
done
tool_build "${want}" "${ldflags}" helm.sh/helm/v3/cmd/helm
"${bin}" version --short 2>/dev/null || true
