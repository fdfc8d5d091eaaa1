#!/usr/bin/env bash
# Tests infra/hooks/next-step.sh (azd postprovision, and the end of postdeploy): it prints the
# exact next command, and runs the RBAC script itself only when AIPROXY_GRANT_RBAC=true and the
# admin API answers. Runs a copy of the hook in a scratch tree whose
# scripts/setup-managed-identity-rbac.sh is a stand-in that records how it was called, with a
# fake curl (no network at all) and a fake az on PATH.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOOK_SOURCE="$HERE/../../infra/hooks/next-step.sh"
POSTDEPLOY_SOURCE="$HERE/../../infra/hooks/postdeploy.sh"
# shellcheck source=scripts/tests/lib.sh
source "$HERE/lib.sh"

readonly SUB=11111111-1111-1111-1111-111111111111
readonly ADMIN_URL=https://ca-admin-swedencentral.example.azurecontainerapps.io
readonly NEXT='./scripts/setup-managed-identity-rbac.sh'

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The only real tool the hooks need besides /bin/sh; nothing else from this machine's PATH (a
# real az or curl) can be reached.
TOOLS="$WORK/tools"
mkdir -p "$TOOLS"
ln -s "$(command -v dirname)" "$TOOLS/dirname"

# setup_case: a fresh project tree (hooks + stand-in RBAC script) and fake tools.
setup_case() {
  TREE="$WORK/tree.$RANDOM$RANDOM"
  mkdir -p "$TREE/infra/hooks" "$TREE/scripts" "$TREE/bin"
  cp "$HOOK_SOURCE" "$POSTDEPLOY_SOURCE" "$TREE/infra/hooks/"
  CALLS="$TREE/calls"
  : >"$CALLS"
  # The stand-in records its arguments and the admin token it was given.
  cat >"$TREE/scripts/setup-managed-identity-rbac.sh" <<STUB
#!/bin/sh
echo "rbac args=[\$*] token=\${AIPROXY_ADMIN_TOKEN:-} url=\${AIPROXY_ADMIN_URL:-}" >>"$CALLS"
exit \${FAKE_RBAC_STATUS:-0}
STUB
  # curl answers /healthz with FAKE_HEALTHZ_BODY, or fails when FAKE_HEALTHZ_DOWN is set.
  cat >"$TREE/bin/curl" <<STUB
#!/bin/sh
for arg in "\$@"; do last=\$arg; done
echo "curl \$last" >>"$CALLS"
[ -z "\${FAKE_HEALTHZ_DOWN:-}" ] || exit 7
printf '%s' "\${FAKE_HEALTHZ_BODY-ok}"
STUB
  cat >"$TREE/bin/az" <<STUB
#!/bin/sh
echo "az \$*" >>"$CALLS"
[ -z "\${FAKE_AZ_FAIL:-}" ] || exit 1
case "\$*" in
  "containerapp secret show"*) echo "adm_from_secret" ;;
  *) exit 3 ;;
esac
STUB
  chmod +x "$TREE/scripts/setup-managed-identity-rbac.sh" "$TREE/bin/curl" "$TREE/bin/az"
}

hook() { # hook VAR=VALUE...: runs the hook as azd would, with the azd environment exported
  run_cmd env -i PATH="$TREE/bin:$TOOLS" AIPROXY_ADMIN_URL="$ADMIN_URL" \
    AIPROXY_ADMIN_APP_NAME=ca-admin-swedencentral AZURE_RESOURCE_GROUP=rg-aiproxy AZURE_SUBSCRIPTION_ID="$SUB" \
    "$@" /bin/sh "$TREE/infra/hooks/next-step.sh"
}

test_without_grant_it_prints_the_exact_command_and_runs_nothing() {
  hook
  expect_status 0
  expect_stdout_has "    $NEXT"
  expect_file_lacks "$CALLS" "rbac"
  expect_file_lacks "$CALLS" "curl"
}

test_with_grant_and_admin_up_it_runs_the_script_with_no_arguments() {
  hook AIPROXY_GRANT_RBAC=true AIPROXY_ADMIN_TOKEN=adm_given
  expect_status 0
  expect_file_has_line "$CALLS" "curl $ADMIN_URL/healthz"
  expect_file_has_line "$CALLS" "rbac args=[] token=adm_given url=$ADMIN_URL"
  expect_file_lacks "$CALLS" "az "
  expect_stdout_has "running $NEXT"
}

test_with_grant_it_reads_the_admin_token_from_the_admin_apps_secret() {
  hook AIPROXY_GRANT_RBAC=true
  expect_status 0
  expect_file_has_line "$CALLS" "az containerapp secret show --name ca-admin-swedencentral --resource-group rg-aiproxy --subscription $SUB --secret-name admin-token --query value --output tsv"
  expect_file_has_line "$CALLS" "rbac args=[] token=adm_from_secret url=$ADMIN_URL"
}

test_with_grant_and_admin_down_it_prints_the_command_and_runs_nothing() {
  hook AIPROXY_GRANT_RBAC=true AIPROXY_ADMIN_TOKEN=adm_given FAKE_HEALTHZ_DOWN=1
  expect_status 0
  expect_file_lacks "$CALLS" "rbac"
  expect_stderr_has "does not answer at $ADMIN_URL/healthz"
  expect_stdout_has "    $NEXT"
}

test_with_grant_and_the_placeholder_image_answering_it_runs_nothing() {
  hook AIPROXY_GRANT_RBAC=true AIPROXY_ADMIN_TOKEN=adm_given FAKE_HEALTHZ_BODY="<html>quickstart</html>"
  expect_status 0
  expect_file_lacks "$CALLS" "rbac"
  expect_stdout_has "    $NEXT"
}

test_with_grant_and_no_token_anywhere_it_prints_the_command() {
  hook AIPROXY_GRANT_RBAC=true FAKE_AZ_FAIL=1
  expect_status 0
  expect_file_lacks "$CALLS" "rbac"
  expect_stderr_has "admin token could not be read"
  expect_stdout_has "    $NEXT"
}

test_a_failing_script_does_not_fail_the_hook() {
  hook AIPROXY_GRANT_RBAC=true AIPROXY_ADMIN_TOKEN=adm_given FAKE_RBAC_STATUS=2
  expect_status 0
  expect_file_has_line "$CALLS" "rbac args=[] token=adm_given url=$ADMIN_URL"
  expect_stderr_has "exited with status 2"
  expect_stderr_has "    $NEXT"
}

test_postdeploy_ends_with_the_next_step() {
  run_cmd env -i PATH="$TREE/bin:$TOOLS" AIPROXY_ADMIN_URL="$ADMIN_URL" \
    AIPROXY_SECONDARY_CONTROL_PLANE_APPS= AIPROXY_SECONDARY_EDGE_APPS= /bin/sh "$TREE/infra/hooks/postdeploy.sh"
  expect_status 0
  expect_stdout_has "one region only"
  expect_stdout_has "    $NEXT"
}

for case_fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
  run_case "$case_fn"
done
