#!/usr/bin/env bash
# Tests the admin console (admin-web/): installs what it needs (Debian's Chromium when
# /usr/bin/chromium is missing, the npm packages pinned in admin-web/package-lock.json), builds
# it, runs the Vitest component tests, then the end-to-end test in headless Chromium against the
# real control plane, edge and mock upstream on loopback. It never runs cargo: the binaries must
# already be in AIPROXY_BIN_DIR (default target/debug). Screenshots go to
# target/admin-web-screenshots. The last line is "N passed, N failed".
#
#   scripts/admin-web-test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

passed=0
failed=0
summarised=""
work=$(mktemp -d)

summary() {
  if [[ -z "$summarised" ]]; then
    summarised=1
    echo "$passed passed, $failed failed"
  fi
}
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() {
  local status=$?
  rm -rf "$work"
  if [[ $status -ne 0 && -z "$summarised" ]]; then
    failed=$((failed + 1))
    summary
  fi
}
trap on_exit EXIT

ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "admin-web needs Node.js 20.19 or later with npm (node and npm are not on PATH)" >&2
    exit 1
  fi
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "admin-web needs Node.js 20.19 or later; this is $(node --version)" >&2
    exit 1
  fi
}

ensure_chromium() {
  if [[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]]; then return; fi
  echo "== installing Chromium (Debian's package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

# Reads {"passed":N,"failed":N} from a file into the totals; a missing file counts as one failure.
add_counts() {
  local file=$1 counts
  if [[ -s "$file" ]] && counts=$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const p = r.passed ?? r.numPassedTests, f = r.failed ?? (r.numFailedTests + (r.numRuntimeErrorTestSuites ?? 0));
      if (!Number.isInteger(p) || !Number.isInteger(f)) process.exit(1);
      console.log(p + " " + f);' "$file"); then
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
  else
    failed=$((failed + 1))
  fi
}

ensure_node
ensure_chromium

cd "$repo/admin-web"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "== npm ci (admin-web)"
  npm ci --no-audit --no-fund
fi

echo "== admin-web: build (tsc + vite build)"
if ! npm run build; then
  echo "the admin console did not build" >&2
  failed=$((failed + 1))
  summary
  exit 1
fi

status=0
echo "== admin-web: component tests (vitest)"
npx vitest run --reporter=default --reporter=json --outputFile.json="$work/vitest.json" || status=1
add_counts "$work/vitest.json"

echo "== admin-web: end to end (headless Chromium, real binaries on loopback)"
E2E_SUMMARY="$work/e2e.json" node e2e/run.mjs || status=1
add_counts "$work/e2e.json"

if [[ $failed -gt 0 ]]; then status=1; fi
summary
exit "$status"
