#!/usr/bin/env bash
# test-failures.sh LOG: the failures in the output of `go test` (not -v),
# without the logs the failing tests printed: the FAIL lines and each
# failing test's own messages (lines `name_test.go:N: ...` that are not a
# relayed log line).
set -euo pipefail
log=${1:?usage: test-failures.sh LOG}
echo
echo "==================== failures (repeated from above) ===================="
grep -E '^(--- FAIL|FAIL|panic:)|^\s+--- FAIL|^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: ' "$log" |
	grep -vE '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: \{"level"' |
	grep -vE '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: [0-9]{4}-[0-9]{2}-[0-9]{2}T' |
	cut -c1-600 | tail -n 200 || true
