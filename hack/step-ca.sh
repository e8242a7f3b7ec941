#!/usr/bin/env bash
# Builds step-ca (github.com/smallstep/certificates/cmd/step-ca), pinned by the
# scratch module hack/tools/stepca, into BIN_DIR (default: <repo>/bin).
# The binary is rebuilt only when BIN_DIR/.step-ca-version does not match the pin.
# Usage: hack/step-ca.sh [BIN_DIR]
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tool_init step-ca stepca "${1:-}"

# The version is read from the scratch module's go.mod, so bumping the pin there
# invalidates the stamp. go.sum is folded in too.
version="$(mod_version github.com/smallstep/certificates)"
if [ -z "${version}" ]; then
	echo "step-ca.sh: cannot find github.com/smallstep/certificates in ${tools_dir}/go.mod" >&2
	exit 1
fi
# Bump recipe when the build command below changes, to force a rebuild.
recipe=2
want="$(tool_stamp "github.com/smallstep/certificates ${version}") recipe=${recipe}"
tool_up_to_date "${want}" "${version}"

echo "building step-ca ${version} into ${bin} (first build takes a few minutes)..."
tool_build "${want}" "-s -w -X main.Version=${version#v} -X 'main.BuildTime=(pinned by hack/tools/stepca)'" \
	github.com/smallstep/certificates/cmd/step-ca
"${bin}" version 2>/dev/null | head -n1 || true
