#!/usr/bin/env bash
# Tests infra/hooks/postdeploy.sh (rolls azd's deployed images out to the other regions)
# against the fake `az` in fake-az/.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOOK="$HERE/../../infra/hooks/postdeploy.sh"
# shellcheck source=scripts/tests/lib.sh
source "$HERE/lib.sh"

readonly SUB=11111111-1111-1111-1111-111111111111
readonly CP_IMAGE=craaa.azurecr.io/aiproxy/control-plane-dev:azd-deploy-1
readonly EDGE_IMAGE=craaa.azurecr.io/aiproxy/edge-dev:azd-deploy-1

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

setup_case() {
  export FAKE_AZ_STATE="$WORK/state.$RANDOM$RANDOM"
  export FAKE_AZ_LOG="$FAKE_AZ_STATE.log"
  mkdir -p "$FAKE_AZ_STATE"
  : >"$FAKE_AZ_LOG"
  touch "$FAKE_AZ_STATE/logged_in"
  echo "$SUB Contoso" >"$FAKE_AZ_STATE/subscription"
  local app
  for app in ca-cp-swedencentral ca-edge-swedencentral ca-cp-eastus2 ca-edge-eastus2 ca-cp-japaneast ca-edge-japaneast; do
    echo "rg-aiproxy/$app - -" >>"$FAKE_AZ_STATE/containerapps"
  done
}

hook() { # hook VAR=VALUE...: runs the hook with azd's variables
  run_cmd env -i PATH="${HOOK_PATH:-$HERE/fake-az:$PATH}" FAKE_AZ_LOG="$FAKE_AZ_LOG" FAKE_AZ_STATE="$FAKE_AZ_STATE" \
    AZURE_RESOURCE_GROUP=rg-aiproxy AZURE_SUBSCRIPTION_ID="$SUB" \
    SERVICE_CONTROL_PLANE_IMAGE_NAME="$CP_IMAGE" SERVICE_EDGE_IMAGE_NAME="$EDGE_IMAGE" "$@" /bin/sh "$HOOK"
}

test_single_region_does_nothing() {
  hook AIPROXY_SECONDARY_CONTROL_PLANE_APPS= AIPROXY_SECONDARY_EDGE_APPS=
  expect_status 0
  expect_stdout_has "one region only"
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "az was called"
}

test_secondary_regions_get_the_deployed_images() {
  hook AIPROXY_SECONDARY_CONTROL_PLANE_APPS="ca-cp-eastus2 ca-cp-japaneast" \
    AIPROXY_SECONDARY_EDGE_APPS="ca-edge-eastus2 ca-edge-japaneast"
  expect_status 0
  local app image
  for app in ca-cp-eastus2 ca-cp-japaneast ca-edge-eastus2 ca-edge-japaneast; do
    image=$EDGE_IMAGE
    [[ $app == ca-cp-* ]] && image=$CP_IMAGE
    expect_file_has_line "$FAKE_AZ_LOG" "az containerapp update --name $app --resource-group rg-aiproxy --subscription $SUB --image $image --output none"
    expect_file_has_line "$FAKE_AZ_STATE/images" "rg-aiproxy/$app $image"
  done
  expect_file_lacks "$FAKE_AZ_LOG" "swedencentral"
}

test_without_az_it_warns_and_points_to_azd_provision() {
  # A PATH with nothing on it, so not even a real az installed on this machine is found.
  mkdir -p "$WORK/empty"
  HOOK_PATH="$WORK/empty" hook AIPROXY_SECONDARY_EDGE_APPS="ca-edge-eastus2"
  expect_status 0
  expect_stderr_has "run 'azd provision'"
}

test_a_failed_update_fails_the_hook() {
  rm "$FAKE_AZ_STATE/logged_in"
  hook AIPROXY_SECONDARY_EDGE_APPS="ca-edge-eastus2"
  expect_status 1
  expect_stderr_has "could not update ca-edge-eastus2"
}

for case_fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
  run_case "$case_fn"
done
