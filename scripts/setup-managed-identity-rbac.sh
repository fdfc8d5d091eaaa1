#!/usr/bin/env bash
# Grants the AI Proxy's user-assigned managed identity the Azure roles it needs to call
# Azure OpenAI, Azure AI Foundry and Azure AI Search with Entra ID tokens (resources added
# with "Use Managed Identity" in the admin console).
#
# The control plane authenticates as its *user-assigned* identity (AZURE_CLIENT_ID), so that
# identity is the one that gets the roles. The container app's system-assigned identity is
# never used unless --system-assigned is given.
#
# Every lookup happens before any change; every role is listed before it is created, so a
# second run changes nothing. Run with --help for the flags.

set -euo pipefail

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  echo "$0 needs bash 4.4 or later (this is $BASH_VERSION). On macOS: brew install bash, or run it in Azure Cloud Shell." >&2
  exit 2
fi

readonly ROLE_OPENAI_USER=5e0bd9bd-7b93-4f28-af87-19fc36ad61bd   # Cognitive Services OpenAI User
readonly ROLE_AI_USER=53ca6127-db72-4e31-b599-04dc5da150b4       # Azure AI User
readonly ROLE_SEARCH_READER=1407120a-92aa-4202-b7e9-c0e197c71c8f # Search Index Data Reader

readonly EXIT_ASSIGN_FAILED=1
readonly EXIT_PRECONDITION=2

PROG=$(basename "$0")
readonly PROG

usage() {
  cat <<EOF
Usage: $PROG [options]

Grants the proxy's user-assigned managed identity the roles it needs on your Azure AI
resources:

  Cognitive Services OpenAI User ($ROLE_OPENAI_USER)
      on each Azure OpenAI / AI Services account (--openai-account) and on each
      Foundry hub account (--foundry-hub, and the hub of every --foundry-project)
  Azure AI User ($ROLE_AI_USER)
      on each Foundry project, scope .../accounts/<hub>/projects/<project>
  Search Index Data Reader ($ROLE_SEARCH_READER)
      on each search service (--search-service; optional)

Which identity (one of):
  --identity-name NAME       user-assigned identity in --resource-group (azd output
                             AIPROXY_IDENTITY_NAME)
  --principal-id GUID        object (principal) id of the identity; no lookup
  --container-app NAME       the single user-assigned identity attached to this container
                             app in --resource-group
  --system-assigned          with --container-app: use the app's system-assigned identity
                             instead. The proxy does NOT authenticate as it by default;
                             only for a deployment you configured that way

Where:
  --resource-group RG        resource group of the identity / container app; also the
                             default for resources given by name
  --target-resource-group RG resource group of resources given by name (default:
                             --resource-group)
  --subscription ID|NAME     subscription (default: the az CLI's current one)

What (each repeatable; a NAME is looked up in the target resource group, or give the full
resource id /subscriptions/.../providers/...):
  --openai-account NAME|ID   Azure OpenAI / AI Services account
  --foundry-hub NAME|ID      Foundry (AI Services) account that holds projects
  --foundry-project HUB/PROJECT|PROJECT|ID
                             Foundry project; PROJECT alone when exactly one --foundry-hub
                             is given. Its hub also gets Cognitive Services OpenAI User
                             (agents call the hub's models)
  --search-service NAME|ID   Azure AI Search service

Behaviour:
  --dry-run                  print every az command (as a runnable script) and run none
  --no-prompt                never ask; fail when something is missing
  -h, --help                 this help

Missing values are asked for interactively when standard input is a terminal. Defaults
are also taken from the environment (as azd exports them): AZURE_SUBSCRIPTION_ID,
AZURE_RESOURCE_GROUP, AIPROXY_IDENTITY_NAME.

Granting roles needs Owner, User Access Administrator or Role Based Access Control
Administrator on each target resource (Contributor is not enough).

Exit status: 0 all roles present, $EXIT_ASSIGN_FAILED some assignment failed,
$EXIT_PRECONDITION bad arguments, not logged in, or something not found (nothing changed).

Examples:
  $PROG --resource-group rg-aiproxy --identity-name id-aiproxy-abc \\
        --target-resource-group rg-ai --openai-account aoai-swe \\
        --foundry-project foundry-hub/workshop --search-service srch-docs
  $PROG --principal-id 00000000-0000-0000-0000-000000000000 \\
        --openai-account /subscriptions/<sub>/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/aoai-swe \\
        --dry-run
EOF
}

die() { # die STATUS MESSAGE...
  local status=$1
  shift
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit "$status"
}
note() { printf '%s\n' "$*"; }
info() { printf '%s\n' "$*" >&2; } # to stderr, so a --dry-run plan on stdout stays a clean script
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }

# ---------------------------------------------------------------- arguments

SUBSCRIPTION=""
RESOURCE_GROUP=""
TARGET_RESOURCE_GROUP=""
IDENTITY_NAME=""
PRINCIPAL_ID=""
CONTAINER_APP=""
USE_SYSTEM_ASSIGNED=0
DRY_RUN=0
PROMPT=1
OPENAI_ACCOUNTS=()
FOUNDRY_HUBS=()
FOUNDRY_PROJECTS=()
SEARCH_SERVICES=()

need_value() { # need_value FLAG REMAINING_ARG_COUNT
  [[ $2 -ge 2 ]] || die "$EXIT_PRECONDITION" "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --subscription) need_value "$1" $#; SUBSCRIPTION=$2; shift 2 ;;
    --resource-group | -g) need_value "$1" $#; RESOURCE_GROUP=$2; shift 2 ;;
    --target-resource-group) need_value "$1" $#; TARGET_RESOURCE_GROUP=$2; shift 2 ;;
    --identity-name) need_value "$1" $#; IDENTITY_NAME=$2; shift 2 ;;
    --principal-id) need_value "$1" $#; PRINCIPAL_ID=$2; shift 2 ;;
    --container-app) need_value "$1" $#; CONTAINER_APP=$2; shift 2 ;;
    --system-assigned) USE_SYSTEM_ASSIGNED=1; shift ;;
    --openai-account) need_value "$1" $#; OPENAI_ACCOUNTS+=("$2"); shift 2 ;;
    --foundry-hub) need_value "$1" $#; FOUNDRY_HUBS+=("$2"); shift 2 ;;
    --foundry-project) need_value "$1" $#; FOUNDRY_PROJECTS+=("$2"); shift 2 ;;
    --search-service) need_value "$1" $#; SEARCH_SERVICES+=("$2"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-prompt) PROMPT=0; shift ;;
    *) die "$EXIT_PRECONDITION" "unknown argument '$1' (see --help)" ;;
  esac
done

if [[ -z $SUBSCRIPTION && -n ${AZURE_SUBSCRIPTION_ID:-} ]]; then
  SUBSCRIPTION=$AZURE_SUBSCRIPTION_ID
  info "Using subscription $SUBSCRIPTION from AZURE_SUBSCRIPTION_ID."
fi
if [[ -z $RESOURCE_GROUP && -n ${AZURE_RESOURCE_GROUP:-} ]]; then
  RESOURCE_GROUP=$AZURE_RESOURCE_GROUP
  info "Using resource group $RESOURCE_GROUP from AZURE_RESOURCE_GROUP."
fi
if [[ -z $IDENTITY_NAME && -z $PRINCIPAL_ID && -z $CONTAINER_APP && -n ${AIPROXY_IDENTITY_NAME:-} ]]; then
  IDENTITY_NAME=$AIPROXY_IDENTITY_NAME
  info "Using identity $IDENTITY_NAME from AIPROXY_IDENTITY_NAME."
fi

interactive() { [[ $PROMPT -eq 1 && -t 0 ]]; }

ask() { # ask VARIABLE PROMPT: reads one line from the terminal into VARIABLE
  local answer
  read -r -p "$2: " answer || true
  printf -v "$1" '%s' "$answer"
}

ask_list() { # ask_list ARRAY PROMPT: comma- or space-separated values appended to ARRAY
  local -n into=$1
  local answer item
  local -a items
  read -r -p "$2 (comma-separated, empty for none): " answer || true
  IFS=', ' read -r -a items <<<"$answer"
  for item in "${items[@]}"; do
    [[ -z $item ]] || into+=("$item")
  done
}

identity_sources=0
[[ -n $IDENTITY_NAME ]] && identity_sources=$((identity_sources + 1))
[[ -n $PRINCIPAL_ID ]] && identity_sources=$((identity_sources + 1))
[[ -n $CONTAINER_APP ]] && identity_sources=$((identity_sources + 1))
[[ $identity_sources -le 1 ]] ||
  die "$EXIT_PRECONDITION" "give only one of --identity-name, --principal-id, --container-app"
[[ $USE_SYSTEM_ASSIGNED -eq 0 || -n $CONTAINER_APP ]] ||
  die "$EXIT_PRECONDITION" "--system-assigned only works with --container-app"

if [[ $identity_sources -eq 0 ]]; then
  if interactive; then
    note "Which identity does the proxy's control plane authenticate as? (azd output AIPROXY_IDENTITY_NAME)"
    ask IDENTITY_NAME "User-assigned identity name (leave empty to give a principal id)"
    [[ -n $IDENTITY_NAME ]] || ask PRINCIPAL_ID "Principal (object) id of the identity"
  fi
  [[ -n $IDENTITY_NAME || -n $PRINCIPAL_ID ]] ||
    die "$EXIT_PRECONDITION" "no identity: give --identity-name (with --resource-group), --principal-id or --container-app"
fi

if [[ -z $RESOURCE_GROUP && -z $PRINCIPAL_ID ]]; then
  interactive && ask RESOURCE_GROUP "Resource group of the identity"
  [[ -n $RESOURCE_GROUP ]] ||
    die "$EXIT_PRECONDITION" "--resource-group is required with --identity-name or --container-app"
fi

if [[ ${#OPENAI_ACCOUNTS[@]} -eq 0 && ${#FOUNDRY_HUBS[@]} -eq 0 &&
  ${#FOUNDRY_PROJECTS[@]} -eq 0 && ${#SEARCH_SERVICES[@]} -eq 0 ]]; then
  if interactive; then
    [[ -n $TARGET_RESOURCE_GROUP ]] ||
      ask TARGET_RESOURCE_GROUP "Resource group of the AI resources given by name [${RESOURCE_GROUP:-none}]"
    ask_list OPENAI_ACCOUNTS "Azure OpenAI / AI Services accounts"
    ask_list FOUNDRY_HUBS "Foundry hub accounts"
    ask_list FOUNDRY_PROJECTS "Foundry projects as HUB/PROJECT"
    ask_list SEARCH_SERVICES "Azure AI Search services"
  fi
  [[ ${#OPENAI_ACCOUNTS[@]} -gt 0 || ${#FOUNDRY_HUBS[@]} -gt 0 ||
    ${#FOUNDRY_PROJECTS[@]} -gt 0 || ${#SEARCH_SERVICES[@]} -gt 0 ]] ||
    die "$EXIT_PRECONDITION" "nothing to grant: give at least one --openai-account, --foundry-hub, --foundry-project or --search-service"
fi

[[ -n $TARGET_RESOURCE_GROUP ]] || TARGET_RESOURCE_GROUP=$RESOURCE_GROUP

readonly GUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
readonly NAME_RE='^[A-Za-z0-9][A-Za-z0-9_.-]*$'
if [[ -n $PRINCIPAL_ID && ! $PRINCIPAL_ID =~ $GUID_RE ]]; then
  die "$EXIT_PRECONDITION" "--principal-id '$PRINCIPAL_ID' is not a GUID (it is the identity's object id, 'principalId' in az identity show)"
fi

# ---------------------------------------------------------------- running az

if [[ $DRY_RUN -eq 0 ]] && ! command -v az >/dev/null 2>&1; then
  die "$EXIT_PRECONDITION" "the Azure CLI (az) is not on PATH: install it, run 'az login', and try again"
fi

AZ_ERR_FILE=$(mktemp)
trap 'rm -f "$AZ_ERR_FILE"' EXIT
AZ_OUT=""

az_capture() { # az_capture ARGS...: runs az; stdout in AZ_OUT, stderr in AZ_ERR_FILE
  AZ_OUT=$(az "$@" 2>"$AZ_ERR_FILE")
}

az_error() { # the first error line of the last az call
  local line
  line=$(grep -m1 -E 'ERROR|error' "$AZ_ERR_FILE" || head -n1 "$AZ_ERR_FILE" || true)
  printf '%s' "${line:-az exited with an error and printed nothing}"
}

az_error_has() { grep -qiE "$1" "$AZ_ERR_FILE"; }

# Dry-run output is a shell script: values that a lookup would have produced appear as
# ${SUBSCRIPTION_ID} / ${PRINCIPAL_ID}, set by an earlier VAR="$(az ...)" line.
# shellcheck disable=SC2016 # a literal ${VAR}, on purpose
dry_ref() { printf '${%s}' "$1"; }

dry_capture() { # dry_capture VAR ARGS...: prints VAR="$(az ARGS...)"
  local var=$1
  shift
  # shellcheck disable=SC2016 # a literal $(...), on purpose
  printf '%s="$(%s)"\n' "$var" "$(render az "$@")"
}

render() { # render ARGS...: one shell-quoted command line; args holding ${VAR} stay expandable
  local arg out=""
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
      out+="$arg "
    elif [[ $arg == *'$'* ]]; then
      out+="\"$arg\" "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

# ---------------------------------------------------------------- subscription and identity

SUB_ID=""
SUB_ARGS=()
if [[ $DRY_RUN -eq 1 ]]; then
  note "# Dry run: the az commands $PROG would run. None was run."
  note "set -e"
  if [[ $SUBSCRIPTION =~ $GUID_RE ]]; then
    SUB_ID=$SUBSCRIPTION
    render az account show --subscription "$SUB_ID" --query id -o tsv; echo
  elif [[ -n $SUBSCRIPTION ]]; then
    dry_capture SUBSCRIPTION_ID account show --subscription "$SUBSCRIPTION" --query id -o tsv
    SUB_ID=$(dry_ref SUBSCRIPTION_ID)
  else
    dry_capture SUBSCRIPTION_ID account show --query id -o tsv
    SUB_ID=$(dry_ref SUBSCRIPTION_ID)
  fi
else
  account_args=(account show --query id -o tsv)
  [[ -z $SUBSCRIPTION ]] || account_args=(account show --subscription "$SUBSCRIPTION" --query id -o tsv)
  if ! az_capture "${account_args[@]}"; then
    if az_error_has "az login|not logged in|no subscription found|AADSTS|expired"; then
      die "$EXIT_PRECONDITION" "not logged in to Azure: run 'az login' and try again ($(az_error))"
    fi
    die "$EXIT_PRECONDITION" "subscription '${SUBSCRIPTION:-current}' not found or not accessible: $(az_error)"
  fi
  SUB_ID=$AZ_OUT
  [[ $SUB_ID =~ $GUID_RE ]] || die "$EXIT_PRECONDITION" "az account show returned '$SUB_ID', not a subscription id"
  note "Subscription: $SUB_ID"
fi
SUB_ARGS=(--subscription "$SUB_ID")

PRINCIPAL_LABEL=""
if [[ -n $PRINCIPAL_ID ]]; then
  PRINCIPAL_LABEL="principal $PRINCIPAL_ID (given with --principal-id)"
elif [[ -n $IDENTITY_NAME ]]; then
  identity_args=(identity show --name "$IDENTITY_NAME" --resource-group "$RESOURCE_GROUP" "${SUB_ARGS[@]}" --query principalId -o tsv)
  if [[ $DRY_RUN -eq 1 ]]; then
    dry_capture PRINCIPAL_ID "${identity_args[@]}"
    PRINCIPAL_ID=$(dry_ref PRINCIPAL_ID)
  else
    if ! az_capture "${identity_args[@]}"; then
      if az_error_has "ResourceNotFound|was not found|could not be found|ResourceGroupNotFound"; then
        die "$EXIT_PRECONDITION" "user-assigned identity '$IDENTITY_NAME' not found in resource group '$RESOURCE_GROUP' (subscription $SUB_ID). azd prints its name as AIPROXY_IDENTITY_NAME: azd env get-value AIPROXY_IDENTITY_NAME"
      fi
      die "$EXIT_PRECONDITION" "could not read identity '$IDENTITY_NAME': $(az_error)"
    fi
    PRINCIPAL_ID=$AZ_OUT
  fi
  PRINCIPAL_LABEL="user-assigned identity '$IDENTITY_NAME' in resource group '$RESOURCE_GROUP'"
else
  if [[ $USE_SYSTEM_ASSIGNED -eq 1 ]]; then
    query=identity.principalId
    PRINCIPAL_LABEL="SYSTEM-assigned identity of container app '$CONTAINER_APP'"
    warn "using the system-assigned identity of '$CONTAINER_APP' as asked. The proxy authenticates as its user-assigned identity (AZURE_CLIENT_ID) unless you configured it otherwise."
  else
    query='identity.userAssignedIdentities.*.principalId'
    PRINCIPAL_LABEL="user-assigned identity of container app '$CONTAINER_APP'"
  fi
  app_args=(resource show --resource-group "$RESOURCE_GROUP" --name "$CONTAINER_APP"
    --resource-type Microsoft.App/containerApps "${SUB_ARGS[@]}" --query "$query" -o tsv)
  if [[ $DRY_RUN -eq 1 ]]; then
    dry_capture PRINCIPAL_ID "${app_args[@]}"
    PRINCIPAL_ID=$(dry_ref PRINCIPAL_ID)
  else
    if ! az_capture "${app_args[@]}"; then
      if az_error_has "ResourceNotFound|was not found|could not be found|ResourceGroupNotFound"; then
        die "$EXIT_PRECONDITION" "container app '$CONTAINER_APP' not found in resource group '$RESOURCE_GROUP' (subscription $SUB_ID)"
      fi
      die "$EXIT_PRECONDITION" "could not read container app '$CONTAINER_APP': $(az_error)"
    fi
    mapfile -t principals < <(printf '%s\n' "$AZ_OUT" | sed '/^[[:space:]]*$/d')
    if [[ ${#principals[@]} -eq 0 ]]; then
      if [[ $USE_SYSTEM_ASSIGNED -eq 1 ]]; then
        die "$EXIT_PRECONDITION" "container app '$CONTAINER_APP' has no system-assigned identity"
      fi
      die "$EXIT_PRECONDITION" "container app '$CONTAINER_APP' has no user-assigned identity. The system-assigned one is not used unless you pass --system-assigned"
    fi
    [[ ${#principals[@]} -eq 1 ]] ||
      die "$EXIT_PRECONDITION" "container app '$CONTAINER_APP' has ${#principals[@]} user-assigned identities: name the one the proxy uses with --identity-name"
    PRINCIPAL_ID=${principals[0]}
  fi
fi

if [[ $DRY_RUN -eq 0 ]]; then
  [[ $PRINCIPAL_ID =~ $GUID_RE ]] ||
    die "$EXIT_PRECONDITION" "the identity lookup returned '$PRINCIPAL_ID', not a principal id"
  note "Identity: $PRINCIPAL_LABEL, principal id $PRINCIPAL_ID"
fi

# ---------------------------------------------------------------- targets

shopt -s nocasematch
readonly ACCOUNT_ID_RE='^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+$'
readonly PROJECT_ID_RE='^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices/accounts/[^/]+)/projects/[^/]+$'
readonly SEARCH_ID_RE='^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Search/searchServices/[^/]+$'

by_name_scope() { # by_name_scope PROVIDER/TYPE NAME FLAG
  [[ $2 =~ $NAME_RE ]] || die "$EXIT_PRECONDITION" "$3 '$2' is neither a resource name nor a resource id"
  [[ -n $TARGET_RESOURCE_GROUP ]] ||
    die "$EXIT_PRECONDITION" "$3 '$2' is a name: give --target-resource-group (or --resource-group), or a full resource id"
  printf '/subscriptions/%s/resourceGroups/%s/providers/%s/%s' "$SUB_ID" "$TARGET_RESOURCE_GROUP" "$1" "$2"
}

account_scope() { # account_scope VALUE FLAG
  local value=${1%/}
  if [[ $value == /* ]]; then
    [[ $value =~ $ACCOUNT_ID_RE ]] ||
      die "$EXIT_PRECONDITION" "$2 '$value' is not an account id (.../providers/Microsoft.CognitiveServices/accounts/<name>)"
    printf '%s' "$value"
  else
    by_name_scope Microsoft.CognitiveServices/accounts "$value" "$2"
  fi
}

project_scope() { # project_scope VALUE
  local value=${1%/}
  if [[ $value == /* ]]; then
    [[ $value =~ $PROJECT_ID_RE ]] ||
      die "$EXIT_PRECONDITION" "--foundry-project '$value' is not a project id (.../accounts/<hub>/projects/<project>)"
    printf '%s' "$value"
    return
  fi
  local hub project
  if [[ $value == */* ]]; then
    hub=${value%%/*}
    project=${value#*/}
  elif [[ ${#FOUNDRY_HUBS[@]} -eq 1 ]]; then
    hub=${FOUNDRY_HUBS[0]}
    project=$value
  else
    die "$EXIT_PRECONDITION" "--foundry-project '$value': write it as HUB/PROJECT (the hub is ambiguous with ${#FOUNDRY_HUBS[@]} --foundry-hub values)"
  fi
  [[ $project =~ $NAME_RE ]] || die "$EXIT_PRECONDITION" "--foundry-project '$value': '$project' is not a project name"
  local hub_scope
  hub_scope=$(account_scope "$hub" --foundry-project)
  printf '%s/projects/%s' "$hub_scope" "$project"
}

search_scope() { # search_scope VALUE
  local value=${1%/}
  if [[ $value == /* ]]; then
    [[ $value =~ $SEARCH_ID_RE ]] ||
      die "$EXIT_PRECONDITION" "--search-service '$value' is not a search service id (.../providers/Microsoft.Search/searchServices/<name>)"
    printf '%s' "$value"
  else
    by_name_scope Microsoft.Search/searchServices "$value" --search-service
  fi
}

# Assignments to make, in order, as "ROLE_ID SCOPE" (no duplicates).
ASSIGNMENTS=()
add_assignment() {
  local entry="$1 $2" existing
  for existing in "${ASSIGNMENTS[@]}"; do
    [[ $existing == "$entry" ]] && return 0
  done
  ASSIGNMENTS+=("$entry")
}

for value in "${OPENAI_ACCOUNTS[@]}"; do
  scope=$(account_scope "$value" --openai-account)
  add_assignment "$ROLE_OPENAI_USER" "$scope"
done
for value in "${FOUNDRY_HUBS[@]}"; do
  scope=$(account_scope "$value" --foundry-hub)
  add_assignment "$ROLE_OPENAI_USER" "$scope"
done
for value in "${FOUNDRY_PROJECTS[@]}"; do
  scope=$(project_scope "$value")
  [[ $scope =~ $PROJECT_ID_RE ]] && add_assignment "$ROLE_OPENAI_USER" "${BASH_REMATCH[1]}"
  add_assignment "$ROLE_AI_USER" "$scope"
done
for value in "${SEARCH_SERVICES[@]}"; do
  scope=$(search_scope "$value")
  add_assignment "$ROLE_SEARCH_READER" "$scope"
done
shopt -u nocasematch

role_name() {
  case $1 in
    "$ROLE_OPENAI_USER") printf 'Cognitive Services OpenAI User' ;;
    "$ROLE_AI_USER") printf 'Azure AI User' ;;
    "$ROLE_SEARCH_READER") printf 'Search Index Data Reader' ;;
  esac
}

# Every distinct scope exists? (checked for all before anything is created)
SCOPES=()
for entry in "${ASSIGNMENTS[@]}"; do
  scope=${entry#* }
  seen=0
  for s in "${SCOPES[@]}"; do [[ $s == "$scope" ]] && seen=1; done
  [[ $seen -eq 1 ]] || SCOPES+=("$scope")
done

missing=0
for scope in "${SCOPES[@]}"; do
  show_args=(resource show --ids "$scope" --query id -o tsv)
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '%s >/dev/null\n' "$(render az "${show_args[@]}")"
  elif ! az_capture "${show_args[@]}"; then
    missing=$((missing + 1))
    if az_error_has "ResourceNotFound|was not found|could not be found|ResourceGroupNotFound|ParentResourceNotFound"; then
      printf '%s: error: not found: %s\n' "$PROG" "$scope" >&2
    else
      printf '%s: error: cannot read %s: %s\n' "$PROG" "$scope" "$(az_error)" >&2
    fi
  fi
done
if [[ $missing -gt 0 ]]; then
  die "$EXIT_PRECONDITION" "$missing target resource(s) not found or not readable; nothing was changed. Check the names, --target-resource-group and --subscription"
fi

# ---------------------------------------------------------------- assignments

created=0
existed=0
failed=0
for entry in "${ASSIGNMENTS[@]}"; do
  role=${entry%% *}
  scope=${entry#* }
  label="$(role_name "$role") on $scope"
  list_args=(role assignment list --assignee "$PRINCIPAL_ID" --role "$role" --scope "$scope" --query '[].id' -o tsv)
  create_args=(role assignment create --assignee-object-id "$PRINCIPAL_ID" --assignee-principal-type ServicePrincipal
    --role "$role" --scope "$scope" -o none)

  if [[ $DRY_RUN -eq 1 ]]; then
    printf '# %s\n' "$label"
    # shellcheck disable=SC2016 # a literal $(...), on purpose
    printf 'if [ -z "$(%s)" ]; then\n' "$(render az "${list_args[@]}")"
    printf '  %s\n' "$(render az "${create_args[@]}")"
    printf 'fi\n'
    continue
  fi

  if ! az_capture "${list_args[@]}"; then
    printf '  FAILED   %s: cannot list role assignments: %s\n' "$label" "$(az_error)"
    failed=$((failed + 1))
    continue
  fi
  if [[ -n ${AZ_OUT//[[:space:]]/} ]]; then
    printf '  exists   %s\n' "$label"
    existed=$((existed + 1))
    continue
  fi
  if az_capture "${create_args[@]}"; then
    printf '  created  %s\n' "$label"
    created=$((created + 1))
  elif az_error_has "RoleAssignmentExists|already exists"; then
    printf '  exists   %s\n' "$label"
    existed=$((existed + 1))
  elif az_error_has "AuthorizationFailed|does not have authorization|roleAssignments/write"; then
    printf '  FAILED   %s: you may not assign roles here. That needs Owner, User Access Administrator or Role Based Access Control Administrator on this scope (Contributor is not enough). Someone who has it can run: %s\n' \
      "$label" "$(render az "${create_args[@]}")"
    failed=$((failed + 1))
  elif az_error_has "PrincipalNotFound|does not exist in the directory"; then
    printf '  FAILED   %s: Entra ID does not know principal %s yet. A new identity takes a minute or two to replicate: run this script again shortly\n' \
      "$label" "$PRINCIPAL_ID"
    failed=$((failed + 1))
  else
    printf '  FAILED   %s: %s\n' "$label" "$(az_error)"
    failed=$((failed + 1))
  fi
done

if [[ $DRY_RUN -eq 1 ]]; then
  note "# ${#ASSIGNMENTS[@]} role assignment(s) planned; dry run, nothing was changed."
  exit 0
fi

note "Summary: $created created, $existed already existed, $failed failed."
if [[ $failed -gt 0 ]]; then
  exit "$EXIT_ASSIGN_FAILED"
fi
note "Role assignments can take a few minutes to take effect. Then add resources with \"Use Managed Identity\" in the admin console."
