#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool), pinned by
# the scratch module hack/tools/promtool, into BIN_DIR (default: <repo>/bin).
# test/monitoring runs it for `promtool check rules` and `promtool test rules`
# on the chart's PrometheusRule.
# The binary is rebuilt only when BIN_DIR/.promtool-version does not match the pin.
# Usage: hack/promtool.sh [BIN_DIR]
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tool_init promtool promtool "${1:-}"

version="$(mod_version github.com/prometheus/prometheus)"
if [ -z "${version}" ]; then
	echo "promtool.sh: cannot find github.com/prometheus/prometheus in ${tools_dir}/go.mod" >&2
	exit 1
fi
# Bump recipe when the build command below changes, to force a rebuild.
recipe=1
want="$(tool_stamp "github.com/prometheus/prometheus ${version}") recipe=${recipe}"
tool_up_to_date "${want}" "${version}"

echo "building promtool ${version} into ${bin} (first build takes a few minutes)..."
# The module's versions are v0.3XX.Y for Prometheus 3.XX.Y; promtool prints
# the version common/version holds.
ldflags="-s -w -X github.com/prometheus/common/version.Version=${version}"
tool_build "${want}" "${ldflags}" github.com/prometheus/prometheus/cmd/promtool
"${bin}" --version 2>/dev/null | head -n1 || true
