#!/usr/bin/env bash
# Tests scripts/setup-managed-identity-rbac.sh with no arguments, as the quick start runs it
# after `azd up`: the azd environment from a fake `azd`, the catalog from a stand-in admin API
# (fake-admin-api.py, the control plane's exact JSON and token check) on 127.0.0.1, the Azure
# side from the fake `az`. Then once against the real control plane binary, when it is built.
# Nothing here leaves loopback.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SCRIPT="$REPO/scripts/setup-managed-identity-rbac.sh"
CONTROL_PLANE="$REPO/target/debug/aiproxy-control-plane"
# shellcheck source=scripts/tests/lib.sh
source "$HERE/lib.sh"

readonly SUB=11111111-1111-1111-1111-111111111111
readonly OTHER_SUB=22222222-2222-2222-2222-222222222222
readonly UAMI=aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa
readonly OPENAI_USER=5e0bd9bd-7b93-4f28-af87-19fc36ad61bd
readonly AI_USER=53ca6127-db72-4e31-b599-04dc5da150b4
readonly CS_USER=a97b65f3-24c7-4388-baec-2e87135dc908
readonly SEARCH_READER=1407120a-92aa-4202-b7e9-c0e197c71c8f
readonly ACCOUNTS=/subscriptions/$SUB/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts
readonly AOAI_SWE=$ACCOUNTS/aoai-swe
readonly AOAI_EUS=$ACCOUNTS/aoai-eus
readonly HUB=$ACCOUNTS/foundry-hub
readonly PROJECT=$ACCOUNTS/foundry-hub/projects/workshop
readonly LEGACY=/subscriptions/$SUB/resourceGroups/rg-old/providers/Microsoft.CognitiveServices/accounts/cs-westeurope
readonly SEARCH=/subscriptions/$SUB/resourceGroups/rg-ai/providers/Microsoft.Search/searchServices/srch-docs
readonly OTHER_AOAI=/subscriptions/$OTHER_SUB/resourceGroups/rg-elsewhere/providers/Microsoft.CognitiveServices/accounts/aoai-other
readonly TOKEN=adm_test_5ecr3t_n0t_t0_b3_pr1nt3d

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The stand-in admin API, one for the whole file; each case writes the catalog it serves.
RESOURCES_JSON="$WORK/resources.json"
ADMIN_LOG="$WORK/admin.log"
echo '[]' >"$RESOURCES_JSON"
FAKE_ADMIN_TOKEN=$TOKEN python3 "$HERE/fake-admin-api.py" "$RESOURCES_JSON" "$WORK/admin.port" "$ADMIN_LOG" &
PIDS+=($!)
for _ in $(seq 1 100); do [[ -s $WORK/admin.port ]] && break; sleep 0.05; done
ADMIN_URL="http://127.0.0.1:$(cat "$WORK/admin.port" 2>/dev/null)"

# catalog ENTRY...: writes the admin API's JSON array for entries "name|type|endpoint|mi[|identity_client_id]",
# shaped as control-plane/src/admin/resources.rs shapes it.
catalog() {
  python3 - "$@" >"$RESOURCES_JSON" <<'PY'
import json, sys
scopes = {"foundry-agent": "https://ai.azure.com/.default", "azure-ai-search": "https://search.azure.com/.default",
          "foundry-model": "https://cognitiveservices.azure.com/.default", "ai-inference": "https://cognitiveservices.azure.com/.default"}
out = []
for n, entry in enumerate(sys.argv[1:]):
    name, kind, endpoint, mi, *rest = entry.split("|")
    client = rest[0] if rest else None
    r = {"id": "3f1c0000-0000-4000-8000-%012d" % n, "friendly_name": name, "deployment_name": name,
         "model_type": kind, "endpoint_url": endpoint, "region": "swedencentral",
         "use_managed_identity": mi == "true", "identity_client_id": client, "active": True,
         "use_max_completion_tokens": False, "has_key": mi != "true"}
    if mi == "true":
        r["managed_identity"] = {
            "identity": ("user-assigned " + client) if client else "the proxy's identity",
            "scope": scopes.get(kind), "token_expires_at": None, "credential": None,
            "last_error": None, "next_attempt_at": None, "active": True}
    out.append(r)
print(json.dumps(out, indent=2))
PY
}

# The three managed-identity resources of the quick start, and one key resource.
THREE=(
  "gpt-4o|foundry-model|https://aoai-swe.openai.azure.com|true"
  "workshop-agents|foundry-agent|https://foundry-hub.services.ai.azure.com/api/projects/workshop|true"
  "docs-index|azure-ai-search|https://srch-docs.search.windows.net|true"
  "gpt-4o-key|foundry-model|https://aoai-eus.openai.azure.com|false"
)

setup_case() {
  export FAKE_AZ_STATE="$WORK/state.$RANDOM$RANDOM"
  export FAKE_AZ_LOG="$FAKE_AZ_STATE.log"
  export FAKE_AZD_LOG="$FAKE_AZ_STATE.azd.log"
  export FAKE_AZD_ENV="$FAKE_AZ_STATE.azd.env"
  unset FAKE_AZD_ADMIN_TOKEN_PARAM
  mkdir -p "$FAKE_AZ_STATE"
  : >"$FAKE_AZ_LOG"
  : >"$FAKE_AZD_LOG"
  : >"$ADMIN_LOG"
  touch "$FAKE_AZ_STATE/logged_in"
  printf '%s Contoso AI\n%s Other\n' "$SUB" "$OTHER_SUB" >"$FAKE_AZ_STATE/subscription"
  echo "rg-aiproxy/id-aiproxy $UAMI" >"$FAKE_AZ_STATE/identities"
  printf '%s\n' "$AOAI_SWE" "$AOAI_EUS" "$HUB" "$PROJECT" "$LEGACY" "$SEARCH" "$OTHER_AOAI" >"$FAKE_AZ_STATE/resources"
  {
    printf '%s\t%s\t%s\t%s\n' "$AOAI_SWE" aoai-swe https://aoai-swe.openai.azure.com/ https://aoai-swe.openai.azure.com/
    printf '%s\t%s\t%s\t%s\n' "$AOAI_EUS" aoai-eus https://aoai-eus.openai.azure.com/ https://aoai-eus.openai.azure.com/
    printf '%s\t%s\t%s\t%s\n' "$HUB" foundry-hub https://foundry-hub.cognitiveservices.azure.com/ \
      "https://foundry-hub.cognitiveservices.azure.com/ https://foundry-hub.openai.azure.com/ https://foundry-hub.services.ai.azure.com/"
    printf '%s\t%s\t%s\t%s\n' "$LEGACY" None https://westeurope.api.cognitive.microsoft.com/ https://westeurope.api.cognitive.microsoft.com/
    printf '%s\t%s\t%s\t%s\n' "$OTHER_AOAI" aoai-other https://aoai-other.openai.azure.com/ https://aoai-other.openai.azure.com/
  } >"$FAKE_AZ_STATE/accounts"
  # What `azd env get-values` prints after `azd up` (the outputs of infra/main.bicep).
  azd_env "$ADMIN_URL"
  catalog "${THREE[@]}"
}

azd_env() { # azd_env ADMIN_URL: the azd environment after `azd up`
  cat >"$FAKE_AZD_ENV" <<EOF
AIPROXY_ADMIN_URL="$1"
AIPROXY_EDGE_URLS="https://ca-edge-swedencentral.example.swedencentral.azurecontainerapps.io/api/v1"
AIPROXY_IDENTITY_NAME="id-aiproxy"
AIPROXY_IDENTITY_PRINCIPAL_ID="$UAMI"
AZURE_ENV_NAME="aiproxy-prod"
AZURE_LOCATION="swedencentral"
AZURE_RESOURCE_GROUP="rg-aiproxy"
AZURE_SUBSCRIPTION_ID="$SUB"
EOF
}

# rbac ARGS...: the script with the fake az and azd first on PATH, the admin token exported
# (it is not an azd output), and none of azd's variables exported.
rbac() {
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL AIPROXY_ADMIN_TOKEN="$TOKEN" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" "$@"
}

create_line() { # create_line ROLE SCOPE: the exact az call expected
  echo "az role assignment create --assignee-object-id $UAMI --assignee-principal-type ServicePrincipal --role $1 --scope $2 -o none"
}

expect_the_three_assignments() {
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $AOAI_SWE"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $AI_USER $PROJECT"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $HUB"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $SEARCH_READER $SEARCH"
}

assignment_count() { wc -l <"$FAKE_AZ_STATE/assignments" | tr -d ' '; }

expect_no_token_anywhere() {
  [[ $RUN_STDOUT != *"$TOKEN"* ]] || fail_case "the admin token is on stdout"
  [[ $RUN_STDERR != *"$TOKEN"* ]] || fail_case "the admin token is on stderr"
  expect_file_lacks "$FAKE_AZ_LOG" "$TOKEN"
  expect_file_lacks "$FAKE_AZD_LOG" "$TOKEN"
}

test_no_arguments_after_azd_up_grants_exactly_what_the_catalog_needs() {
  rbac
  expect_status 0
  expect_file_has_line "$FAKE_AZD_LOG" "azd env get-values"
  expect_file_has_line "$ADMIN_LOG" "GET /admin/api/v1/resources auth=ok"
  expect_file_has_line "$FAKE_AZ_LOG" "az identity show --name id-aiproxy --resource-group rg-aiproxy --subscription $SUB --query principalId -o tsv"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$OPENAI_USER" "$AOAI_SWE")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$AI_USER" "$PROJECT")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$OPENAI_USER" "$HUB")"
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$SEARCH_READER" "$SEARCH")"
  expect_count "$FAKE_AZ_LOG" "role assignment create" 4
  expect_the_three_assignments
  [[ $(assignment_count) -eq 4 ]] || fail_case "$(assignment_count) assignments, expected 4"
  expect_file_lacks "$FAKE_AZ_LOG" "aoai-eus" # the key resource needs no role
  expect_stdout_has "Catalog: 4 resource(s) in $ADMIN_URL/admin/api/v1/resources, 3 with managed identity."
  expect_stdout_has "Plan: 4 role assignment(s) for user-assigned identity 'id-aiproxy' in resource group 'rg-aiproxy' ($UAMI)"
  expect_stdout_has "  Azure AI User on $PROJECT"
  expect_stdout_has "      why: 'workshop-agents' (foundry-agent, https://foundry-hub.services.ai.azure.com/api/projects/workshop)"
  expect_stdout_has "      why: 'docs-index' (azure-ai-search, https://srch-docs.search.windows.net)"
  expect_stdout_has "Summary: 4 created, 0 already existed, 0 failed."
  expect_no_token_anywhere
}

test_plan_is_printed_before_any_change() {
  rbac
  expect_status 0
  local plan applied
  plan=$(grep -n '^Plan: ' <<<"$RUN_STDOUT" | cut -d: -f1)
  applied=$(grep -n '^  created ' <<<"$RUN_STDOUT" | head -n1 | cut -d: -f1)
  [[ -n $plan && -n $applied && $plan -lt $applied ]] || fail_case "the plan does not come before the first change"
}

test_second_run_changes_nothing() {
  rbac
  expect_status 0
  : >"$FAKE_AZ_LOG"
  rbac
  expect_status 0
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment create"
  expect_count "$FAKE_AZ_LOG" "role assignment list" 4
  expect_stdout_has "Summary: 0 created, 4 already existed, 0 failed."
  [[ $(assignment_count) -eq 4 ]] || fail_case "assignments changed on the second run"
}

test_check_reports_missing_assignments_before_and_none_after() {
  rbac --check
  expect_status 4
  expect_stdout_has "  MISSING  Cognitive Services OpenAI User on $AOAI_SWE"
  expect_stdout_has "  MISSING  Azure AI User on $PROJECT"
  expect_stdout_has "Check: 0 present, 4 missing, 0 could not be listed."
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment create"
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "--check created assignments"
  rbac
  expect_status 0
  rbac --check
  expect_status 0
  expect_stdout_has "  present  Search Index Data Reader on $SEARCH"
  expect_stdout_has "Check: 4 present, 0 missing, 0 could not be listed."
  expect_stdout_lacks "MISSING"
}

test_check_after_a_partial_grant_names_only_what_is_missing() {
  echo "$UAMI $OPENAI_USER $AOAI_SWE" >"$FAKE_AZ_STATE/assignments"
  rbac --check
  expect_status 4
  expect_stdout_has "  present  Cognitive Services OpenAI User on $AOAI_SWE"
  expect_stdout_has "  MISSING  Cognitive Services OpenAI User on $HUB"
  expect_stdout_has "Check: 1 present, 3 missing"
}

test_unmatched_endpoint_is_named_with_the_reason_and_the_rest_is_granted() {
  catalog "${THREE[@]}" "gpt-elsewhere|foundry-model|https://aoai-nowhere.openai.azure.com|true"
  rbac
  expect_status 3
  expect_stdout_has "Not matched, so no role for them (1):"
  expect_stdout_has "  'gpt-elsewhere' (foundry-model, https://aoai-nowhere.openai.azure.com): no Cognitive Services account in subscription $SUB has the host aoai-nowhere.openai.azure.com"
  expect_stderr_has "1 catalog resource(s) matched no Azure resource"
  expect_the_three_assignments
  [[ $(assignment_count) -eq 4 ]] || fail_case "$(assignment_count) assignments, expected the 4 matched ones"
}

test_account_in_another_subscription_is_not_guessed() {
  catalog "gpt-other|foundry-model|https://aoai-other.openai.azure.com|true"
  rbac
  expect_status 3
  expect_stdout_has "'gpt-other' (foundry-model, https://aoai-other.openai.azure.com): no Cognitive Services account in subscription $SUB"
  expect_stdout_has "run again with --subscription <that one>"
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "something was assigned"
  rbac --subscription Other
  expect_status 0
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $OTHER_AOAI"
}

test_unknown_project_and_bad_agent_endpoint_are_unmatched() {
  catalog "agents-x|foundry-agent|https://foundry-hub.services.ai.azure.com/api/projects/nope|true" \
    "agents-y|foundry-agent|https://foundry-hub.services.ai.azure.com/|true" \
    "search-x|azure-ai-search|https://srch-missing.search.windows.net|true"
  rbac
  expect_status 3
  expect_stdout_has "'agents-x' (foundry-agent, https://foundry-hub.services.ai.azure.com/api/projects/nope): account foundry-hub has no project 'nope'"
  expect_stdout_has "'agents-y' (foundry-agent, https://foundry-hub.services.ai.azure.com/): not a Foundry project endpoint"
  expect_stdout_has "'search-x' (azure-ai-search, https://srch-missing.search.windows.net): no search service named 'srch-missing'"
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "something was assigned"
}

test_hosts_compare_case_insensitively() {
  catalog "gpt-4o|foundry-model|HTTPS://AOAI-SWE.OpenAI.Azure.COM|true" \
    "agents|foundry-agent|HTTPS://FOUNDRY-HUB.SERVICES.AI.AZURE.COM/api/projects/workshop|true" \
    "docs|azure-ai-search|https://SRCH-DOCS.search.windows.net|true"
  rbac
  expect_status 0
  expect_the_three_assignments
}

test_ai_inference_gets_cognitive_services_user_on_its_account() {
  catalog "mistral|ai-inference|https://foundry-hub.services.ai.azure.com/models|true"
  rbac
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "$(create_line "$CS_USER" "$HUB")"
  expect_stdout_has "  Cognitive Services User on $HUB"
  [[ $(assignment_count) -eq 1 ]] || fail_case "$(assignment_count) assignments, expected 1"
}

test_account_without_custom_subdomain_is_matched_by_its_endpoint() {
  catalog "gpt-legacy|foundry-model|https://westeurope.api.cognitive.microsoft.com|true" \
    "gpt-hub|foundry-model|https://foundry-hub.cognitiveservices.azure.com|true"
  rbac
  expect_status 0
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $LEGACY"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $HUB"
}

test_one_assignment_per_role_and_scope_with_every_reason() {
  catalog "gpt-4o|foundry-model|https://aoai-swe.openai.azure.com|true" \
    "embeddings|foundry-model|https://aoai-swe.openai.azure.com/|true" \
    "hub-model|foundry-model|https://foundry-hub.openai.azure.com|true" \
    "agents|foundry-agent|https://foundry-hub.services.ai.azure.com/api/projects/workshop|true"
  rbac
  expect_status 0
  expect_count "$FAKE_AZ_LOG" "role assignment create" 3
  expect_stdout_has "Plan: 3 role assignment(s)"
  expect_stdout_has "      why: 'gpt-4o' (foundry-model, https://aoai-swe.openai.azure.com)"
  expect_stdout_has "      why: 'embeddings' (foundry-model, https://aoai-swe.openai.azure.com/)"
  expect_stdout_has "      why: 'hub-model' (foundry-model, https://foundry-hub.openai.azure.com)"
  expect_stdout_has "      why: 'agents' (foundry-agent, https://foundry-hub.services.ai.azure.com/api/projects/workshop), whose agents call the hub's models"
}

test_mcp_servers_and_resources_with_their_own_identity_are_skipped_with_the_reason() {
  catalog "${THREE[@]}" "docs-mcp|mcp-server|https://mcp.example.com/mcp|true" \
    "gpt-team|foundry-model|https://aoai-eus.openai.azure.com|true|bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
  rbac
  expect_status 0
  expect_stdout_has "Skipped (2):"
  expect_stdout_has "'docs-mcp' (mcp-server, https://mcp.example.com/mcp): an MCP server is not an Azure RBAC target"
  expect_stdout_has "'gpt-team' (foundry-model, https://aoai-eus.openai.azure.com): it authenticates as its own user-assigned identity (identity_client_id bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb)"
  [[ $(assignment_count) -eq 4 ]] || fail_case "$(assignment_count) assignments, expected 4"
}

test_empty_catalog_has_nothing_to_grant_yet() {
  catalog "gpt-4o-key|foundry-model|https://aoai-eus.openai.azure.com|false"
  rbac
  expect_status 0
  expect_stdout_has "Nothing to grant: no resource in the catalog uses managed identity."
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment"
}

test_dry_run_prints_runnable_az_commands_and_changes_nothing() {
  rbac --dry-run
  expect_status 0
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment"
  expect_file_lacks "$FAKE_AZ_LOG" "identity show"
  [[ ! -s $FAKE_AZ_STATE/assignments ]] || fail_case "dry run created assignments"
  expect_stdout_has "# Plan: 4 role assignment(s) for user-assigned identity 'id-aiproxy'"
  expect_stdout_has "# Catalog: 4 resource(s)"
  expect_stdout_has "az role assignment create --assignee-object-id \"\${PRINCIPAL_ID}\" --assignee-principal-type ServicePrincipal --role $AI_USER --scope $PROJECT -o none"
  expect_stdout_has "az role assignment create --assignee-object-id \"\${PRINCIPAL_ID}\" --assignee-principal-type ServicePrincipal --role $SEARCH_READER --scope $SEARCH -o none"
  expect_no_token_anywhere
  local plan="$WORK/plan.sh"
  printf '%s\n' "$RUN_STDOUT" >"$plan"
  bash -n "$plan" || fail_case "the printed plan is not valid shell"
  run_cmd env PATH="$HERE/fake-az:$PATH" bash "$plan"
  expect_status 0
  expect_the_three_assignments
  [[ $(assignment_count) -eq 4 ]] || fail_case "the printed plan made $(assignment_count) assignments, expected 4"
  run_cmd env PATH="$HERE/fake-az:$PATH" bash "$plan"
  expect_status 0
  [[ $(assignment_count) -eq 4 ]] || fail_case "running the plan twice duplicated assignments"
}

test_catalog_file_instead_of_the_admin_api() {
  cp "$RESOURCES_JSON" "$WORK/exported.json"
  azd_env "" # no admin URL in the environment
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" --catalog-file "$WORK/exported.json"
  expect_status 0
  [[ ! -s $ADMIN_LOG ]] || fail_case "the admin API was called"
  expect_stdout_has "Catalog: 4 resource(s) in $WORK/exported.json, 3 with managed identity."
  expect_the_three_assignments
}

test_catalog_file_that_is_not_a_resource_list_is_refused() {
  echo '{"error": "nope"}' >"$WORK/bad.json"
  rbac --catalog-file "$WORK/bad.json"
  expect_status 2
  expect_stderr_has "is not a list of resources"
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment"
}

test_wrong_admin_token_is_a_clear_error_and_is_not_printed() {
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL AIPROXY_ADMIN_TOKEN="wrong-$TOKEN" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 2
  expect_stderr_has "the admin API refused the admin token (HTTP 401: invalid admin token)"
  expect_file_has_line "$ADMIN_LOG" "GET /admin/api/v1/resources auth=invalid"
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment"
  expect_no_token_anywhere
}

test_no_admin_token_without_a_terminal_fails_clearly() {
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 2
  expect_stderr_has "no admin token to read the catalog at $ADMIN_URL/admin/api/v1/resources: export AIPROXY_ADMIN_TOKEN"
  [[ ! -s $ADMIN_LOG ]] || fail_case "the admin API was called without a token"
}

test_admin_token_is_asked_for_without_echo_on_a_terminal() {
  if ! command -v script >/dev/null 2>&1; then
    fail_case "util-linux 'script' is needed to give the script a terminal"
    return
  fi
  # The token is typed only once the prompt shows (typed ahead, the terminal would echo it
  # before the script could turn echo off, as a real terminal does).
  local transcript="$WORK/transcript" input="$WORK/typed" pid fd
  rm -f "$input"
  mkfifo "$input"
  env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME -u AIPROXY_IDENTITY_PRINCIPAL_ID \
    -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN PATH="$HERE/fake-az:$PATH" \
    script -qec "bash '$SCRIPT'" /dev/null <"$input" >"$transcript" 2>&1 &
  pid=$!
  exec {fd}>"$input"
  for _ in $(seq 1 200); do
    grep -q "(input hidden)" "$transcript" 2>/dev/null && break
    sleep 0.05
  done
  printf '%s\n' "$TOKEN" >&"$fd"
  RUN_STATUS=0
  wait "$pid" || RUN_STATUS=$?
  exec {fd}>&-
  RUN_STDOUT=$(tr -d '\r' <"$transcript")
  RUN_STDERR=""
  expect_status 0
  expect_stdout_has "Admin token for $ADMIN_URL/admin/api/v1/resources (input hidden): "
  [[ $RUN_STDOUT != *"$TOKEN"* ]] || fail_case "the typed admin token was echoed"
  expect_file_has_line "$ADMIN_LOG" "GET /admin/api/v1/resources auth=ok"
  expect_the_three_assignments
}

test_admin_token_azd_keeps_is_used_and_a_vault_reference_is_not() {
  export FAKE_AZD_ADMIN_TOKEN_PARAM="\"$TOKEN\""
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 0
  expect_stderr_has "Using the admin token azd keeps (azd env config get infra.parameters.adminToken)."
  expect_the_three_assignments
  expect_no_token_anywhere
  export FAKE_AZD_ADMIN_TOKEN_PARAM='"akvs://00000000-0000-0000-0000-000000000000/admin-token"'
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 2
  expect_stderr_has "no admin token"
  unset FAKE_AZD_ADMIN_TOKEN_PARAM
}

test_admin_token_is_read_from_the_admin_apps_secret() {
  echo 'AIPROXY_ADMIN_APP_NAME="ca-admin-swedencentral"' >>"$FAKE_AZD_ENV"
  echo "rg-aiproxy/ca-admin-swedencentral/admin-token $TOKEN" >"$FAKE_AZ_STATE/secrets"
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL -u AIPROXY_ADMIN_TOKEN \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 0
  expect_file_has_line "$FAKE_AZ_LOG" "az containerapp secret show --name ca-admin-swedencentral --resource-group rg-aiproxy --subscription $SUB --secret-name admin-token --query value --output tsv"
  expect_stderr_has "Using the admin token from the admin-token secret of container app ca-admin-swedencentral."
  expect_file_has_line "$ADMIN_LOG" "GET /admin/api/v1/resources auth=ok"
  expect_the_three_assignments
  expect_no_token_anywhere
}

test_admin_api_unreachable_is_a_clear_error() {
  azd_env "http://127.0.0.1:$(free_port)"
  rbac
  expect_status 2
  expect_stderr_has "cannot reach the admin API at http://127.0.0.1:"
  expect_file_lacks "$FAKE_AZ_LOG" "role assignment"
}

test_plain_http_admin_url_to_another_host_is_refused() {
  azd_env "http://aiproxy.example.com"
  rbac
  expect_status 2
  expect_stderr_has "plain http to another host"
  [[ ! -s $FAKE_AZ_LOG ]] || fail_case "az was called"
}

test_without_azd_the_exported_variables_are_read() {
  mkdir -p "$WORK/az-only"
  ln -sf "$HERE/fake-az/az" "$WORK/az-only/az"
  run_cmd env AZURE_SUBSCRIPTION_ID="$SUB" AZURE_RESOURCE_GROUP=rg-aiproxy AIPROXY_IDENTITY_NAME=id-aiproxy \
    AIPROXY_ADMIN_URL="$ADMIN_URL" AIPROXY_ADMIN_TOKEN="$TOKEN" PATH="$WORK/az-only:/usr/bin:/bin" bash "$SCRIPT"
  expect_status 0
  expect_stderr_has "Using identity id-aiproxy from AIPROXY_IDENTITY_NAME."
  expect_stderr_has "Using the admin API at $ADMIN_URL from AIPROXY_ADMIN_URL."
  [[ ! -s $FAKE_AZD_LOG ]] || fail_case "azd was called"
  expect_the_three_assignments
}

test_reads_the_azd_environment_of_the_project_from_any_directory() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  run_cmd bash -c 'cd "$1" && shift && env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL AIPROXY_ADMIN_TOKEN="$1" PATH="$2" bash "$3"' \
    _ / "$TOKEN" "$HERE/fake-az:$PATH" "$SCRIPT"
  expect_status 0
  expect_stderr_has "Read the azd environment (azd env get-values)."
  expect_the_three_assignments
}

test_principal_id_output_is_enough_without_a_resource_group() {
  grep -v AZURE_RESOURCE_GROUP "$FAKE_AZD_ENV" >"$FAKE_AZD_ENV.new" && mv "$FAKE_AZD_ENV.new" "$FAKE_AZD_ENV"
  rbac
  expect_status 0
  expect_stderr_has "Using principal id $UAMI from AIPROXY_IDENTITY_PRINCIPAL_ID (azd env get-values)."
  expect_file_lacks "$FAKE_AZ_LOG" "identity show"
  expect_the_three_assignments
}

test_explicit_targets_alone_do_not_read_the_catalog() {
  rbac --target-resource-group rg-ai --openai-account aoai-eus
  expect_status 0
  [[ ! -s $ADMIN_LOG ]] || fail_case "the admin API was called"
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $AOAI_EUS"
  [[ $(assignment_count) -eq 1 ]] || fail_case "$(assignment_count) assignments, expected 1"
  expect_stdout_has "      why: --openai-account aoai-eus"
}

test_explicit_targets_with_admin_url_add_to_the_catalog() {
  rbac --admin-url "$ADMIN_URL/" --target-resource-group rg-ai --openai-account aoai-eus --openai-account aoai-swe
  expect_status 0
  expect_the_three_assignments
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "$UAMI $OPENAI_USER $AOAI_EUS"
  [[ $(assignment_count) -eq 5 ]] || fail_case "$(assignment_count) assignments, expected 5"
  expect_stdout_has "      why: --openai-account aoai-swe"
}

test_flags_win_over_the_azd_environment() {
  echo "rg-other/id-other bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb" >>"$FAKE_AZ_STATE/identities"
  rbac --resource-group rg-other --identity-name id-other
  expect_status 0
  expect_file_has_line "$FAKE_AZ_STATE/assignments" "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb $AI_USER $PROJECT"
  expect_file_lacks "$FAKE_AZ_STATE/assignments" "$UAMI"
}

test_dry_run_and_check_together_are_refused() {
  rbac --dry-run --check
  expect_status 2
  expect_stderr_has "--dry-run and --check do not go together"
}

test_help_states_bash_4_4_and_the_new_flags() {
  rbac --help
  expect_status 0
  local text
  for text in "bash 4.4 or later" --admin-url --admin-token --catalog-file --no-catalog --check \
    "$CS_USER" "Exit status:" "azd env get-values"; do
    expect_stdout_has "$text"
  done
}

test_old_bash_is_refused_with_a_clear_message() {
  # The check itself, with bash's read-only BASH_VERSINFO swapped for a settable copy.
  local check
  check=$(sed -n '/^# bash-version-check begin$/,/^# bash-version-check end$/p' "$SCRIPT" | sed 's/BASH_VERSINFO/FAKE_VERSINFO/g')
  [[ -n $check ]] || fail_case "no bash version check between the markers"
  run_cmd bash -c "FAKE_VERSINFO=(4 3 48 1 release x86_64); $check
echo passed"
  expect_status 2
  expect_stderr_has "setup-managed-identity-rbac.sh needs bash 4.4 or later; this is bash 4.3. On macOS: brew install bash"
  run_cmd bash -c "FAKE_VERSINFO=(3 2 57 1 release arm64); $check
echo passed"
  expect_status 2
  expect_stderr_has "this is bash 3.2"
  run_cmd bash -c "FAKE_VERSINFO=(4 4 0 1 release x86_64); $check
echo passed"
  expect_status 0
  expect_stdout_has passed
  # It runs before anything else.
  local first_check first_set
  first_check=$(grep -n '^# bash-version-check begin$' "$SCRIPT" | cut -d: -f1)
  first_set=$(grep -n '^set -euo pipefail$' "$SCRIPT" | cut -d: -f1)
  [[ -n $first_check && -n $first_set && $first_check -lt $first_set ]] || fail_case "the version check does not come first"
}

test_run_with_sh_says_to_use_bash() {
  run_cmd sh "$SCRIPT"
  expect_status 2
  expect_stderr_has "needs bash 4.4 or later: run it with bash, not sh."
}

for case_fn in $(declare -F | awk '{print $3}' | grep '^test_'); do
  run_case "$case_fn"
done

# ---------------------------------------------------------------- the real control plane

# The script with no arguments against the real admin API: the control plane on 127.0.0.1
# with SQLite, the three managed-identity resources created through its admin API.
real_control_plane_case() {
  local dir="$WORK/cp" admin_port grpc_port cp_token=adm_test_real_cp_token_0001 base pid ok=0 body
  mkdir -p "$dir"
  admin_port=$(free_port)
  grpc_port=$(free_port)
  base="http://127.0.0.1:$admin_port"
  (
    cd "$dir" || exit 1
    exec env -i PATH="/usr/bin:/bin" HOME="$dir" RUST_LOG=warn \
      AIPROXY_DATABASE_URL="sqlite://$dir/aiproxy.db" AIPROXY_DATA_DIR="$dir" \
      AIPROXY_ADMIN_ADDR="127.0.0.1:$admin_port" AIPROXY_GRPC_ADDR="127.0.0.1:$grpc_port" \
      AIPROXY_ADMIN_TOKEN="$cp_token" AIPROXY_EDGE_TOKEN=edg_test_real_cp_token_0001 \
      AIPROXY_CREDENTIAL=none AIPROXY_ADMIN_WEB_DIR="$dir/no-console" "$CONTROL_PLANE"
  ) >"$dir/control-plane.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    if curl -fsS "$base/healthz" >/dev/null 2>&1; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $ok -ne 1 ]]; then
    fail_case "the control plane did not start: $(tail -n 5 "$dir/control-plane.log")"
    return
  fi
  for body in \
    '{"friendly_name":"gpt-4o","deployment_name":"gpt-4o","model_type":"foundry-model","endpoint_url":"https://aoai-swe.openai.azure.com","region":"swedencentral","use_managed_identity":true}' \
    '{"friendly_name":"workshop-agents","deployment_name":"agents","model_type":"foundry-agent","endpoint_url":"https://foundry-hub.services.ai.azure.com/api/projects/workshop","region":"swedencentral","use_managed_identity":true}' \
    '{"friendly_name":"docs-index","deployment_name":"docs","model_type":"azure-ai-search","endpoint_url":"https://srch-docs.search.windows.net","region":"swedencentral","use_managed_identity":true}'; do
    curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $cp_token" -H 'Content-Type: application/json' \
      --data "$body" "$base/admin/api/v1/resources" ||
      fail_case "creating a resource failed: $body"
  done
  azd_env "$base"
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL AIPROXY_ADMIN_TOKEN="$cp_token" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT"
  expect_status 0
  expect_stdout_has "Catalog: 3 resource(s) in $base/admin/api/v1/resources, 3 with managed identity."
  expect_the_three_assignments
  [[ $(assignment_count) -eq 4 ]] || fail_case "$(assignment_count) assignments, expected 4"
  [[ $RUN_STDOUT$RUN_STDERR != *"$cp_token"* ]] || fail_case "the admin token was printed"
  run_cmd env -u AZURE_SUBSCRIPTION_ID -u AZURE_RESOURCE_GROUP -u AIPROXY_IDENTITY_NAME \
    -u AIPROXY_IDENTITY_PRINCIPAL_ID -u AIPROXY_ADMIN_URL AIPROXY_ADMIN_TOKEN="$cp_token" \
    PATH="$HERE/fake-az:$PATH" bash "$SCRIPT" --check
  expect_status 0
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

if [[ -x $CONTROL_PLANE ]] && command -v curl >/dev/null 2>&1; then
  run_case real_control_plane_case
else
  echo "ok - real_control_plane_case # SKIP target/debug/aiproxy-control-plane is not built (or curl is missing)"
fi
