#!/usr/bin/env bash
# flake-hunt.sh: run the tests N times in a row, optionally with a CPU hog
# beside them (every core busy), and print every failing test with its
# output. A flake is a test that fails in some runs and passes in others;
# each one found is fixed at its cause, never retried away.
#
# Usage: hack/flake-hunt.sh [-n N] [-hog] [-p 'PKG...'] [-run REGEX] [-o DIR]
#
#   -n N        runs (default 20)
#   -hog        keep every core busy with a spinning process at normal
#               priority for the whole hunt
#   -p PKGS     packages (default ./..., what `make test` runs)
#   -run REGEX  only the tests matching REGEX
#   -o DIR      keep each run's log there (default: a new temporary directory)
#
# It runs `go test` the way `make test` does (KUBEBUILDER_ASSETS, HELM_BIN,
# STEPCA_BIN, -count=1, TEST_TIMEOUT); run `make test-deps` first. Exit
# status: 0 when every run passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20 hog=false pkgs=./... run= out=
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) runs=$2; shift 2 ;;
    -hog) hog=true; shift ;;
    -p) pkgs=$2; shift 2 ;;
    -run) run=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "flake-hunt: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "${runs}" =~ ^[1-9][0-9]*$ ]] || { echo "flake-hunt: -n wants a positive number" >&2; exit 2; }
[[ -n "${out}" ]] || out=$(mktemp -d /tmp/flake-hunt-XXXXXX)
mkdir -p "${out}"
bin=$(pwd)/bin

hogs=()
stop_hogs() {
  for p in "${hogs[@]}"; do kill "${p}" 2>/dev/null || true; done
}
trap stop_hogs EXIT
if ${hog}; then
  for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    hogs+=($!)
  done
  echo "flake-hunt: ${#hogs[@]} spinning processes keep every core busy"
fi

args=(test ${pkgs} -count=1 -timeout "${TEST_TIMEOUT:-25m}")
[[ -n "${run}" ]] && args+=(-run "${run}")
failed_runs=()
for i in $(seq "${runs}"); do
  log="${out}/run-${i}.log"
  start=${SECONDS}
  if KUBEBUILDER_ASSETS="${bin}" STEPCA_BIN="${bin}/step-ca" HELM_BIN="${bin}/helm" go "${args[@]}" >"${log}" 2>&1; then
    echo "flake-hunt: run ${i}/${runs} passed ($((SECONDS - start))s)"
  else
    echo "flake-hunt: run ${i}/${runs} FAILED ($((SECONDS - start))s): ${log}"
    failed_runs+=("${i}")
    hack/test-failures.sh "${log}"
  fi
done

echo
if [[ ${#failed_runs[@]} -eq 0 ]]; then
  echo "flake-hunt: ${runs} of ${runs} runs passed (logs in ${out})"
  exit 0
fi
echo "flake-hunt: ${#failed_runs[@]} of ${runs} runs failed: runs ${failed_runs[*]} (logs in ${out})"
echo "failing tests, with how many runs each failed in:"
for i in "${failed_runs[@]}"; do
  grep -E '^\s*--- FAIL: ' "${out}/run-${i}.log" | sed -E 's/^\s*--- FAIL: ([^ ]+).*/\1/' | sort -u
done | sort | uniq -c | sort -rn
exit 1
