#!/usr/bin/env bash
# Builds step-ca (github.com/smallstep/certificates/cmd/step-ca), pinned by the
# scratch module hack/tools/stepca, into BIN_DIR (default: <repo>/bin).
# The binary is rebuilt only when BIN_DIR/.step-ca-version does not match the pin.
# Usage: hack/step-ca.sh [BIN_DIR]
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
tools_dir="${script_dir}/tools/stepca"

bin_dir="${1:-${repo_root}/bin}"
mkdir -p "${bin_dir}"
bin_dir="$(cd "${bin_dir}" && pwd)"

bin="${bin_dir}/step-ca"
stamp="${bin_dir}/.step-ca-version"

go_bin="${GO:-go}"
if ! command -v "${go_bin}" >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	go_bin=/usr/local/go/bin/go
fi

# The version is read from the scratch module's go.mod, so bumping the pin there
# invalidates the stamp. go.sum is folded in too.
version="$(awk '$1 == "require" && $2 == "github.com/smallstep/certificates" {print $3} $1 == "github.com/smallstep/certificates" {print $2}' "${tools_dir}/go.mod" | head -n1)"
if [ -z "${version}" ]; then
	echo "step-ca.sh: cannot find github.com/smallstep/certificates in ${tools_dir}/go.mod" >&2
	exit 1
fi
# Bump recipe when the build command below changes, to force a rebuild.
recipe=2
want="github.com/smallstep/certificates ${version} gosum=$(cksum <"${tools_dir}/go.sum" | awk '{print $1}') recipe=${recipe}"

if [ -x "${bin}" ] && [ -f "${stamp}" ] && [ "$(cat "${stamp}")" = "${want}" ]; then
	echo "step-ca ${version} already built: ${bin}"
	exit 0
fi

echo "building step-ca ${version} into ${bin} (first build takes a few minutes)..."
start="$(date +%s)"
tmp="${bin}.tmp.$$"
trap 'rm -f "${tmp}"' EXIT
(
	cd "${tools_dir}"
	# Building from the scratch module's directory with GOWORK=off uses its
	# go.mod, never the root module's; -mod=readonly never rewrites go.mod/go.sum.
	GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly" CGO_ENABLED=0 \
		"${go_bin}" build -trimpath \
		-ldflags "-s -w -X main.Version=${version#v} -X 'main.BuildTime=(pinned by hack/tools/stepca)'" \
		-o "${tmp}" github.com/smallstep/certificates/cmd/step-ca
)
mv -f "${tmp}" "${bin}"
printf '%s\n' "${want}" >"${stamp}"
echo "built ${bin} in $(( $(date +%s) - start ))s"
"${bin}" version 2>/dev/null | head -n1 || true
