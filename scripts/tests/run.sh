#!/usr/bin/env bash
# Runs the deployment tests: shellcheck on the shell scripts, the RBAC script and the azd
# postdeploy hook against a fake `az`, and the offline checks of azure.yaml, infra/ and the
# Dockerfile. No network, no Docker, nothing that reaches Azure.
#
#   bash scripts/tests/run.sh
#
# Every test prints "ok - ..." or "not ok - ..."; the last line is "N passed, N failed" and
# the exit status is non-zero when anything failed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO" || exit 1

RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT

# suite NAME COMMAND...: runs one test file; a file that dies without reporting counts as a failure.
suite() {
  local name=$1 status=0 before after
  shift
  echo "# $name"
  before=$(grep -cE '^(not )?ok ' "$RESULTS")
  "$@" 2>&1 | tee -a "$RESULTS" || status=$?
  after=$(grep -cE '^(not )?ok ' "$RESULTS")
  if [[ $status -ne 0 ]] && ! tail -n +"$((before + 1))" "$RESULTS" | grep -q '^not ok '; then
    echo "not ok - $name exited with status $status without reporting a failure" | tee -a "$RESULTS"
  elif [[ $after -eq $before ]]; then
    echo "not ok - $name ran no test" | tee -a "$RESULTS"
  fi
}

ensure_shellcheck() {
  command -v shellcheck >/dev/null 2>&1 && return 0
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "# installing shellcheck (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck; } >/dev/null 2>&1
  fi
  command -v shellcheck >/dev/null 2>&1
}

SHELL_FILES=(
  scripts/setup-managed-identity-rbac.sh
  scripts/run.sh
    scripts/test.sh
  scripts/admin-web-test.sh
  .ci/run
  infra/hooks/postdeploy.sh
  infra/hooks/next-step.sh
  scripts/tests/run.sh
  scripts/tests/lib.sh
  scripts/tests/test-rbac-script.sh
  scripts/tests/test-postdeploy-hook.sh
  scripts/tests/test-next-step-hook.sh
  scripts/tests/fake-az/az
  scripts/tests/fake-az/azd
  scripts/tests/test-rbac-catalog.sh
  loadtest/bench/side_by_side.sh
)

run_shellcheck() {
  local file
  if ! ensure_shellcheck; then
    echo "not ok - shellcheck is not installed and could not be installed (apt-get install shellcheck)"
    return 1
  fi
  for file in "${SHELL_FILES[@]}"; do
    if out=$(shellcheck -x "$file" 2>&1); then
      echo "ok - shellcheck $file"
    else
      echo "not ok - shellcheck $file"
      printf '%s\n' "$out" | sed 's/^/#   /'
    fi
  done
}

suite "shellcheck" run_shellcheck
suite "RBAC script against a fake az" bash "$HERE/test-rbac-script.sh"
suite "RBAC script with no arguments: azd environment and catalog" bash "$HERE/test-rbac-catalog.sh"
suite "postdeploy hook against a fake az" bash "$HERE/test-postdeploy-hook.sh"
suite "next-step hook (prints or runs the RBAC script)" bash "$HERE/test-next-step-hook.sh"
# The infra checks parse the metrics collector's YAML configuration with PyYAML.
# Installed like the other tools (from the package index, or the distribution's package when
# python3 is the system's); the checks themselves use no network.
ensure_pyyaml() {
  python3 -c 'import yaml' 2>/dev/null && return 0
  echo "# installing PyYAML"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyyaml >/dev/null 2>&1 ||
    { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1 &&
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml; } >/dev/null 2>&1; }
  python3 -c 'import yaml' 2>/dev/null || echo "# PyYAML could not be installed: the metrics collector check will fail"
}
ensure_pyyaml

suite "offline infra checks" python3 "$HERE/check_infra.py"
suite "the infra checks catch broken files" python3 "$HERE/test_check_infra.py"

passed=$(grep -c '^ok ' "$RESULTS")
failed=$(grep -c '^not ok ' "$RESULTS")
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
