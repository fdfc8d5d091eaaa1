# shellcheck shell=bash
# Small test harness shared by the shell test files: each test case is a function; its
# expectations collect failures, and run_case prints one TAP-style line per case
# ("ok - name" / "not ok - name" followed by "#   why" lines) that scripts/tests/run.sh counts.

CASE_FAILURES=()

fail_case() { CASE_FAILURES+=("$*"); }

run_case() { # run_case FUNCTION
  CASE_FAILURES=()
  if declare -F setup_case >/dev/null; then setup_case; fi
  "$1"
  if [[ ${#CASE_FAILURES[@]} -eq 0 ]]; then
    echo "ok - $1"
  else
    echo "not ok - $1"
    printf '#   %s\n' "${CASE_FAILURES[@]}"
  fi
}

# RUN_STATUS, RUN_STDOUT, RUN_STDERR describe the last run_cmd.
run_cmd() { # run_cmd COMMAND...: runs with stdin from /dev/null
  local out err
  out=$(mktemp)
  err=$(mktemp)
  RUN_STATUS=0
  "$@" </dev/null >"$out" 2>"$err" || RUN_STATUS=$?
  RUN_STDOUT=$(cat "$out")
  RUN_STDERR=$(cat "$err")
  rm -f "$out" "$err"
}

expect_status() { # expect_status EXPECTED
  [[ $RUN_STATUS -eq $1 ]] ||
    fail_case "exit status $RUN_STATUS, expected $1; stderr: ${RUN_STDERR:0:400}; stdout: ${RUN_STDOUT:0:400}"
}

expect_stdout_has() { [[ $RUN_STDOUT == *"$1"* ]] || fail_case "stdout lacks: $1 (stdout: ${RUN_STDOUT:0:600})"; }
expect_stderr_has() { [[ $RUN_STDERR == *"$1"* ]] || fail_case "stderr lacks: $1 (stderr: ${RUN_STDERR:0:600})"; }
expect_stdout_lacks() { [[ $RUN_STDOUT != *"$1"* ]] || fail_case "stdout has: $1"; }

expect_file_has_line() { # expect_file_has_line FILE LINE: an exact line
  grep -qxF -- "$2" "$1" 2>/dev/null || fail_case "$(basename "$1") lacks the line: $2"
}

expect_file_lacks() { # expect_file_lacks FILE TEXT
  if grep -qF -- "$2" "$1" 2>/dev/null; then fail_case "$(basename "$1") has: $(grep -F -- "$2" "$1" | head -n3)"; fi
}

expect_count() { # expect_count FILE TEXT N: N lines contain TEXT
  local n
  n=$(grep -cF -- "$2" "$1" 2>/dev/null || true)
  [[ ${n:-0} -eq $3 ]] || fail_case "$(basename "$1"): ${n:-0} lines contain '$2', expected $3"
}
