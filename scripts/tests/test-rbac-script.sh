#!/usr/bin/env bash
# Tests scripts/setup-managed-identity-rbac.sh against the fake `az` in fake-az/: the exact
# role ids and scope strings, idempotency on a second run, a dry run that runs nothing, and
# every error path. Nothing here reaches Azure: PATH puts the fake first, and the fake
# refuses any command it does not model.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT="$HERE/../setup-managed-identity-rbac.sh"
# shellcheck source=scripts/tests/lib.sh
source "$HERE/lib.sh"

readonly SUB=11111111-1111-1111-1111-111111111111
readonly OTHER_SUB=22222222-2222-2222-2222-222222222222
readonly UAMI=aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa   # the proxy's user-assigned identity
readonly SYSTEM=5555aaaa-5555-5555-5555-555555555555 # the container app's system-assigned one
readonly PULL_UAMI=bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb       # the AcrPull-only identity the templates attach too
readonly UAMI_CLIENT=cccccccc-aaaa-aaaa-aaaa-aaaaaaaaaaaa     # the client id of UAMI
readonly PULL_CLIENT=cccccccc-bbbb-bbbb-bbbb-bbbbbbbbbbbb     # the client id of PULL_UAMI
readonly OPENAI_USER=5e0bd9bd-7b93-4f28-af87-19fc36ad61bd
readonly AI_USER=53ca6127-db72-4e31-b599-04dc5da150b4
readonly SEARCH_READER=1407120a-92aa-4202-b7e9-c0e197c71c8f
readonly ACCOUNTS=/subscriptions/$SUB/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts
readonly AOAI_SWE=$ACCOUNTS/aoai-swe
readonly AOAI_EUS=$ACCOUNTS/aoai-eus
readonly HUB=$ACCOUNTS/foundry-hub
readonly PROJECT=$ACCOUNTS/foundry-hub/projects/workshop
readonly SEARCH=/subscriptions/$SUB/resourceGroups/rg-ai/providers/Microsoft.Search/searchServices/srch-docs
readonly OTHER_AOAI=/subscriptions/$OTHER_SUB/resourceGroups/rg-elsewhere/providers/Microsoft.CognitiveServices/accounts/aoai-other

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

setup_case() {
  export FAKE_AZ_STATE="$WORK/state.$RANDOM$RANDOM"
  export FAKE_AZ_LOG="$FAKE_AZ_STATE.log"
  mkdir -p "$FAKE_AZ_STATE"
  : >"$FAKE_AZ_LOG"
  touch "$FAKE_AZ_STATE/logged_in"
  printf '%s Contoso AI\n%s Other\n' "$SUB" "$OTHER_SUB" >"$FAKE_AZ_STATE/subscription"
  echo "rg-aiproxy/id-aiproxy $UAMI" >"$FAKE_AZ_STATE/identities"
  printf '%s\n' "$AOAI_SWE" "$AOAI_EUS" "$HUB" "$PROJECT" "$SEARCH" "$OTHER_AOAI" >"$FAKE_AZ_STATE/resources"
  {
    echo "rg-aiproxy/ca-cp-swedencentral $SYSTEM $UAMI"
    echo "rg-aiproxy/ca-no-uami $SYSTEM -"
    # As the templates deploy it: the AcrPull-only identity too, the proxy's named in AZURE_CLIENT_ID.
    echo "rg-aiproxy/ca-cp-two - $PULL_UAMI,$UAMI $PULL_CLIENT,$UAMI_CLIENT $UAMI_CLIENT"
    echo "rg-aiproxy/ca-two-unnamed - $PULL_UAMI,$UAMI $PULL_CLIENT,$UAMI_CLIENT -"
  } >"$FAKE_AZ_STATE/containerapps"
}

rbac() { # rbac ARGS...: the script with the fake az first on PATH and no azd variables
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" "$@"
}

FULL_ARGS=(--resource-group rg-aiproxy --identity-name id-aiproxy --target-resource-group rg-ai
  --openai-account aoai-swe --openai-account aoai-eus --foundry-project foundry-hub/workshop
  --search-service srch-docs)

create_line() { # create_line PRINCIPAL ROLE SCOPE: the exact az call expected
  echo "az role assignment create --assignee-object-id $1 --assignee-principal-type ServicePrincipal --role $2 --scope $3 -o none"
}

expect_no_create() { expect_file_lacks "$FAKE_AZ_LOG" "role assignment create"; }

test_help_documents_every_flag() {
  rbac --help
  expect_status 0
  local flag
  for flag in --resource-group --identity-name --principal-id --container-app --system-assigned \
    --openai-account --foundry-hub --foundry-project --search-service --subscription \
    --target-resource-group --dry-run --no-prompt "$OPENAI_USER" "$AI_USER" "$SEARCH_READER"; do
    expect_stdout_has "$flag"
  done
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "--help ran az"
}

test_grants_exact_roles_and_scopes_to_the_user_assigned_identity() {
  rbac "${FULL_ARGS[@]}"
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "az identity show --name id-aiproxy --resource-group rg-aiproxy --subscription $SUB --query principalId -o tsv"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_SWE")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_EUS")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$HUB")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$AI_USER" "$PROJECT")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$SEARCH_READER" "$SEARCH")"
  expect_count "$FAKE_AZ_LOG" "role assignment create" 5
  expect_file_lacks "$FAKE_AZ_LOG" "$SYSTEM"
  expect_stdout_has "Summary: 5 created, 0 already existed, 0 failed."
  # Each assignment is listed before it is created.
  local list create
  list=$(grep -nF "az role assignment list --assignee $UAMI --role $AI_USER --scope $PROJECT --query [].id -o tsv" "$FAKE_AZ_LOG" | cut -d: -f1)
  create=$(grep -nF "$(create_line "$UAMI" "$AI_USER" "$PROJECT")" "$FAKE_AZ_LOG" | cut -d: -f1)
  [[ -n $list && -n $create && $list -lt $create ]] || fail_case "the project assignment was not listed before it was created"
}

test_second_run_changes_nothing_and_says_what_existed() {
  rbac "${FULL_ARGS[@]}"
  expect_status 0
  : >"$FAKE_AZ_LOG"
  rbac "${FULL_ARGS[@]}"
  expect_status 0
  expect_no_create
  expect_count "$FAKE_AZ_LOG" "role assignment list" 5
  expect_stdout_has "exists   Azure AI User on $PROJECT"
  expect_stdout_has "exists   Cognitive Services OpenAI User on $AOAI_SWE"
  expect_stdout_has "Summary: 0 created, 5 already existed, 0 failed."
  [[ $(wc -l <"$FAKE_AZ_STATE/assignments") -eq 5 ]] || fail_case "assignments changed on the second run"
}

test_dry_run_runs_no_az_command_and_prints_every_one() {
  rbac "${FULL_ARGS[@]}" --subscription "$SUB" --dry-run
  expect_status 0
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "dry run called az: $(head -n3 "$FAKE_AZ_LOG")"
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "dry run created assignments"
  expect_stdout_has "az account show --subscription $SUB --query id -o tsv"
  # shellcheck disable=SC2016 # a literal $(...)
  expect_stdout_has 'PRINCIPAL_ID="$(az identity show --name id-aiproxy --resource-group rg-aiproxy'
  expect_stdout_has "az resource show --ids $PROJECT --query id -o tsv"
  expect_stdout_has "az role assignment create --assignee-object-id \"\${PRINCIPAL_ID}\" --assignee-principal-type ServicePrincipal --role $AI_USER --scope $PROJECT -o none"
  expect_stdout_has "az role assignment create --assignee-object-id \"\${PRINCIPAL_ID}\" --assignee-principal-type ServicePrincipal --role $SEARCH_READER --scope $SEARCH -o none"
  expect_stdout_has "5 role assignment(s) planned"
}

test_dry_run_output_is_a_runnable_script_with_the_same_effect() {
  rbac "${FULL_ARGS[@]}" --dry-run
  expect_status 0
  local plan="$WORK/plan.sh"
  printf '%s\n' "$RUN_STDOUT" >"$plan"
  run_cmd env PATH="$HERE/fake-az:$PATH" bash "$plan"
  expect_status 0
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $AI_USER $PROJECT"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $HUB"
  [[ $(wc -l <"$FAKE_AZ_STATE/assignments") -eq 5 ]] || fail_case "the printed plan made $(wc -l <"$FAKE_AZ_STATE/assignments") assignments, expected 5"
  run_cmd env PATH="$HERE/fake-az:$PATH" bash "$plan"
  expect_status 0
  [[ $(wc -l <"$FAKE_AZ_STATE/assignments") -eq 5 ]] || fail_case "running the plan twice duplicated assignments"
}

test_not_logged_in_is_a_clear_error() {
  rm "$FAKE_AZ_STATE/logged_in"
  rbac "${FULL_ARGS[@]}"
  expect_status 2
  expect_stderr_has "not logged in to Azure: run 'az login'"
  expect_no_create
}

test_unknown_subscription_is_a_clear_error() {
  rbac "${FULL_ARGS[@]}" --subscription Nope
  expect_status 2
  expect_stderr_has "subscription 'Nope' not found"
  expect_no_create
}

test_identity_not_found_names_it_and_its_group() {
  rbac --resource-group rg-aiproxy --identity-name id-missing --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 2
  expect_stderr_has "user-assigned identity 'id-missing' not found in resource group 'rg-aiproxy'"
  expect_no_create
}

test_account_not_found_stops_before_any_change() {
  rbac --resource-group rg-aiproxy --identity-name id-aiproxy --target-resource-group rg-ai \
    --openai-account aoai-swe --openai-account aoai-missing
  expect_status 2
  expect_stderr_has "not found: $ACCOUNTS/aoai-missing"
  expect_stderr_has "nothing was changed"
  expect_no_create
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment list"
}

test_missing_permission_explains_which_roles_can_assign() {
  touch "$FAKE_AZ_STATE/deny_role_write"
  rbac "${FULL_ARGS[@]}"
  expect_status 1
  expect_stdout_has "FAILED   Azure AI User on $PROJECT: you may not assign roles here"
  expect_stdout_has "Owner, User Access Administrator or Role Based Access Control Administrator"
  expect_stdout_has "Someone who has it can run: az role assignment create --assignee-object-id $UAMI"
  expect_stdout_has "Summary: 0 created, 0 already existed, 5 failed."
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "assignments were recorded"
}

test_identity_not_yet_replicated_says_to_retry() {
  touch "$FAKE_AZ_STATE/unknown_principal"
  rbac "${FULL_ARGS[@]}"
  expect_status 1
  expect_stdout_has "takes a minute or two to replicate"
}

test_principal_id_skips_the_identity_lookup() {
  rbac --principal-id "$UAMI" --subscription "$SUB" --openai-account "$AOAI_SWE"
  expect_status 0
  expect_file_lacks "$FAKE_AZ_LOG" "identity show"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_SWE")"
}

test_invalid_principal_id_is_rejected() {
  rbac --principal-id not-a-guid --openai-account "$AOAI_SWE"
  expect_status 2
  expect_stderr_has "is not a GUID"
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "az was called"
}

test_container_app_uses_its_user_assigned_identity_not_the_system_one() {
  rbac --resource-group rg-aiproxy --container-app ca-cp-swedencentral --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "az resource show --resource-group rg-aiproxy --name ca-cp-swedencentral --resource-type Microsoft.App/containerApps --subscription $SUB --query identity.userAssignedIdentities.*.principalId -o tsv"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_SWE")"
  expect_file_lacks "$FAKE_AZ_LOG" "$SYSTEM"
}

test_container_app_with_the_pull_identity_too_uses_the_one_in_azure_client_id() {
  rbac --resource-group rg-aiproxy --container-app ca-cp-two --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 0
  expect_stdout_has "its AZURE_CLIENT_ID $UAMI_CLIENT"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_SWE")"
  expect_file_lacks "$FAKE_AZ_LOG" "--assignee-object-id $PULL_UAMI"
}

test_container_app_with_two_identities_and_none_named_refuses() {
  rbac --resource-group rg-aiproxy --container-app ca-two-unnamed --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 2
  expect_stderr_has "has 2 user-assigned identities"
  expect_stderr_has "--identity-name"
  expect_no_create
}

test_system_assigned_identity_only_when_asked() {
  rbac --resource-group rg-aiproxy --container-app ca-cp-swedencentral --system-assigned --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 0
  expect_stderr_has "using the system-assigned identity"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$SYSTEM" "$OPENAI_USER" "$AOAI_SWE")"
}

test_container_app_without_user_assigned_identity_refuses() {
  rbac --resource-group rg-aiproxy --container-app ca-no-uami --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 2
  expect_stderr_has "has no user-assigned identity"
  expect_stderr_has "--system-assigned"
  expect_no_create
}

test_missing_identity_without_a_terminal_fails_clearly() {
  rbac --resource-group rg-aiproxy --openai-account aoai-swe
  expect_status 2
  expect_stderr_has "no identity: give --identity-name"
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "az was called"
}

test_nothing_to_grant_fails_clearly() {
  rbac --resource-group rg-aiproxy --identity-name id-aiproxy
  expect_status 2
  expect_stderr_has "nothing to grant"
}

test_full_resource_ids_may_live_in_another_subscription() {
  rbac --resource-group rg-aiproxy --identity-name id-aiproxy --openai-account "$OTHER_AOAI" --foundry-project "$PROJECT"
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$OTHER_AOAI")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$AI_USER" "$PROJECT")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$HUB")"
}

test_project_name_alone_uses_the_single_hub() {
  rbac --resource-group rg-aiproxy --identity-name id-aiproxy --target-resource-group rg-ai \
    --foundry-hub foundry-hub --foundry-project workshop
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$AI_USER" "$PROJECT")"
  expect_count "$FAKE_AZ_LOG" "role assignment create" 2
}

test_malformed_project_id_is_rejected() {
  rbac --resource-group rg-aiproxy --identity-name id-aiproxy --foundry-project "$HUB"
  expect_status 2
  expect_stderr_has "is not a project id"
  expect_no_create
}

test_subscription_by_name_is_resolved_to_its_id() {
  rbac "${FULL_ARGS[@]}" --subscription "Contoso AI"
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "az account show --subscription Contoso AI --query id -o tsv"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$AI_USER" "$PROJECT")"
}

test_azd_environment_values_are_defaults() {
  run_cmd env AZURE_RESOURCE_GROUP=rg-aiproxy AIPROXY_IDENTITY_NAME=id-aiproxy AZURE_SUBSCRIPTION_ID="$SUB" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" --target-resource-group rg-ai --openai-account aoai-swe
  expect_status 0
  expect_stderr_has "Using identity id-aiproxy from AIPROXY_IDENTITY_NAME."
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_SWE")"
}

test_dry_run_with_azd_defaults_prints_only_the_script() {
  run_cmd env AZURE_RESOURCE_GROUP=rg-aiproxy AIPROXY_IDENTITY_NAME=id-aiproxy AZURE_SUBSCRIPTION_ID="$SUB" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" --target-resource-group rg-ai --openai-account aoai-swe --dry-run
  expect_status 0
  expect_stdout_lacks "Using "
  printf '%s\n' "$RUN_STDOUT" | bash -n || fail_case "the printed plan is not valid shell"
}

test_asks_for_what_is_missing_on_a_terminal() {
  if ! command -v script >/dev/null 2>&1; then
    fail_case "util-linux 'script' is needed to give the script a terminal"
    return
  fi
  local answers="$WORK/answers" transcript="$WORK/transcript"
  # identity name, its resource group, target group, OpenAI accounts, hubs, projects, search
  printf 'id-aiproxy\nrg-aiproxy\nrg-ai\naoai-swe, aoai-eus\n\nfoundry-hub/workshop\n\n' >"$answers"
  RUN_STATUS=0
  env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME PATH="$HERE/fake-az:$PATH" \
    script -qec "bash '$SCRIPT'" /dev/null <"$answers" >"$transcript" 2>&1 || RUN_STATUS=$?
  RUN_STDOUT=$(tr -d '\r' <"$transcript")
  RUN_STDERR=""
  expect_status 0
  expect_stdout_has "User-assigned identity name"
  expect_stdout_has "Foundry projects as HUB/PROJECT"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$OPENAI_USER" "$AOAI_EUS")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$UAMI" "$AI_USER" "$PROJECT")"
  expect_count "$FAKE_AZ_LOG" "role assignment create" 4
}

for case_fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
  run_case "$case_fn"
done
