#!/usr/bin/env bash
# Grants the AI Proxy's user-assigned managed identity the Azure roles it needs to call
# Azure OpenAI, Azure AI Foundry, Azure AI Inference and Azure AI Search with Entra ID tokens
# (resources added with "Use Managed Identity" in the admin console).
#
# With no arguments, after `azd up`, it reads the azd environment (subscription, resource
# group, identity, admin URL), reads the catalog's managed-identity resources from the admin
# API, matches each endpoint to its Azure resource and grants exactly the roles they need.
# The explicit flags (--openai-account, --foundry-project, ...) still work and name targets
# by hand.
#
# The control plane authenticates as its *user-assigned* identity (AZURE_CLIENT_ID), so that
# identity is the one that gets the roles. The container app's system-assigned identity is
# never used unless --system-assigned is given.
#
# Every lookup happens before any change; every role is listed before it is created, so a
# second run changes nothing. Run with --help for the flags.

# Checked before anything bash-specific runs: `sh script`, or the bash 3.2 of macOS, gets a clear
# message instead of a syntax error further down.
if [ -z "${BASH_VERSION:-}" ]; then
  echo "setup-managed-identity-rbac.sh needs bash 4.4 or later: run it with bash, not sh." >&2
  exit 2
fi
# bash-version-check begin
if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  echo "setup-managed-identity-rbac.sh needs bash 4.4 or later; this is bash ${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}. On macOS: brew install bash, then run it with that bash (\"\$(brew --prefix)/bin/bash\" scripts/setup-managed-identity-rbac.sh), or run it in Azure Cloud Shell." >&2
  exit 2
fi
# bash-version-check end

set -euo pipefail

readonly ROLE_OPENAI_USER=5e0bd9bd-7b93-4f28-af87-19fc36ad61bd   # Cognitive Services OpenAI User
readonly ROLE_AI_USER=53ca6127-db72-4e31-b599-04dc5da150b4       # Azure AI User
readonly ROLE_CS_USER=a97b65f3-24c7-4388-baec-2e87135dc908       # Cognitive Services User
readonly ROLE_SEARCH_READER=1407120a-92aa-4202-b7e9-c0e197c71c8f # Search Index Data Reader

readonly EXIT_ASSIGN_FAILED=1
readonly EXIT_PRECONDITION=2
readonly EXIT_UNMATCHED=3
readonly EXIT_MISSING=4

PROG=$(basename "$0")
readonly PROG

usage() {
  cat <<EOF
Usage: $PROG [options]

Grants the proxy's user-assigned managed identity the Azure roles its managed-identity
resources need. Needs bash 4.4 or later, the Azure CLI (az, logged in) and, to read the
catalog, python3.

With no arguments (after azd up) it:
  1. reads the azd environment: azd env get-values when azd is on PATH, else the exported
     variables AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AIPROXY_IDENTITY_NAME,
     AIPROXY_IDENTITY_PRINCIPAL_ID, AIPROXY_ADMIN_URL, AIPROXY_ADMIN_APP_NAME (an exported
     variable wins over azd's);
  2. reads the catalog from the admin API (GET \$AIPROXY_ADMIN_URL/admin/api/v1/resources) with
     the admin token (see --admin-token; never printed);
  3. matches the endpoint host of every resource with "use_managed_identity": true to its Azure
     resource in the subscription (az cognitiveservices account list: custom subdomain and
     endpoints; az resource list for search services), case-insensitively;
  4. prints the plan (identity, role, scope, why) and applies it: each assignment is listed
     first and created only when missing, so a second run changes nothing.

Roles, by resource type:
  foundry-model    Cognitive Services OpenAI User ($ROLE_OPENAI_USER)
                   on the Azure OpenAI / AI Services account
  foundry-agent    Azure AI User ($ROLE_AI_USER)
                   on the project, scope .../accounts/<hub>/projects/<project>, and
                   Cognitive Services OpenAI User on its hub account (agents call its models)
  ai-inference     Cognitive Services User ($ROLE_CS_USER)
                   on the AI Services account
  azure-ai-search  Search Index Data Reader ($ROLE_SEARCH_READER)
                   on the search service
  mcp-server       none: not an Azure RBAC target (reported as skipped)
A resource with its own identity_client_id authenticates as that identity, not the proxy's:
it is reported as skipped. A resource whose endpoint matches no Azure resource is reported by
name with the reason; nothing is guessed.

Catalog:
  --admin-url URL            the admin console/API (azd output AIPROXY_ADMIN_URL); https, or
                             http on loopback only
  --admin-token TOKEN        admin token (prefer AIPROXY_ADMIN_TOKEN: a flag shows in ps).
                             Default: AIPROXY_ADMIN_TOKEN, else the admin-token secret of
                             the admin app (AIPROXY_ADMIN_APP_NAME, read with az), else
                             azd's adminToken parameter, else asked for (hidden) on a terminal
  --catalog-file FILE        read the resources from FILE (the JSON array that
                             GET /admin/api/v1/resources returns) instead of the admin API
  --no-catalog               do not read the catalog: explicit targets only

Which identity (one of; default: AIPROXY_IDENTITY_NAME in the resource group, else
AIPROXY_IDENTITY_PRINCIPAL_ID):
  --identity-name NAME       user-assigned identity in --resource-group (azd output
                             AIPROXY_IDENTITY_NAME)
  --principal-id GUID        object (principal) id of the identity; no lookup
  --container-app NAME       the user-assigned identity attached to this container app in
                             --resource-group; of several (the templates attach the AcrPull-only
                             one too), the one its container names in AZURE_CLIENT_ID
  --system-assigned          with --container-app: use the app's system-assigned identity
                             instead. The proxy does NOT authenticate as it by default;
                             only for a deployment you configured that way

Where:
  --resource-group RG        resource group of the identity / container app; also the
                             default for resources given by name (default AZURE_RESOURCE_GROUP)
  --target-resource-group RG resource group of resources given by name (default:
                             --resource-group)
  --subscription ID|NAME     subscription (default AZURE_SUBSCRIPTION_ID, else the az CLI's
                             current one). Catalog endpoints are matched in this subscription

Explicit targets (each repeatable; a NAME is looked up in the target resource group, or give
the full resource id /subscriptions/.../providers/...):
  --openai-account NAME|ID   Azure OpenAI / AI Services account: Cognitive Services OpenAI User
  --foundry-hub NAME|ID      Foundry (AI Services) account that holds projects: Cognitive
                             Services OpenAI User
  --foundry-project HUB/PROJECT|PROJECT|ID
                             Foundry project: Azure AI User; PROJECT alone when exactly one
                             --foundry-hub is given. Its hub also gets Cognitive Services
                             OpenAI User (agents call the hub's models)
  --search-service NAME|ID   Azure AI Search service: Search Index Data Reader

Explicit targets and the catalog: with explicit targets and neither --admin-url nor
--catalog-file, only the explicit targets are granted (the catalog is not read, even when the
azd environment has AIPROXY_ADMIN_URL). With --admin-url or --catalog-file as well, both are
granted (an assignment both ask for, once). Identity, subscription and resource group flags
always win over the environment.

Behaviour:
  --dry-run                  print the plan and every az command as a runnable script, and
                             change nothing. With the catalog, the read-only lookups that
                             derive the plan (account and search service lists, project
                             existence) do run
  --check                    change nothing; report which needed assignments are missing
  --no-prompt                never ask; fail when something is missing
  -h, --help                 this help

Missing values are asked for interactively when standard input is a terminal.

Granting roles needs Owner, User Access Administrator or Role Based Access Control
Administrator on each target resource (Contributor is not enough).

Exit status:
  0  every needed role is present (or was created); every catalog resource was matched
  $EXIT_ASSIGN_FAILED  some assignment could not be created or listed (the others were handled)
  $EXIT_PRECONDITION  bad arguments, bash too old, not logged in, admin API unreachable or token
     refused, identity or target not found: nothing was changed
  $EXIT_UNMATCHED  some catalog resource matched no Azure resource: everything that matched was
     granted (or planned, or checked); the unmatched ones are listed by name with the reason
  $EXIT_MISSING  --check: some needed assignment is missing

Examples:
  $PROG                                  # after azd up: grant what the catalog needs
  $PROG --check                          # anything missing? (exit $EXIT_MISSING if so)
  $PROG --dry-run > grant-roles.sh       # the az commands, for someone who holds Owner
  $PROG --catalog-file resources.json    # an exported resource list instead of the admin API
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
CHECK=0
PROMPT=1
ADMIN_URL=""
ADMIN_URL_FLAG=0
ADMIN_TOKEN=""
CATALOG_FILE=""
NO_CATALOG=0
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
    --admin-url) need_value "$1" $#; ADMIN_URL=$2; ADMIN_URL_FLAG=1; shift 2 ;;
    --admin-token) need_value "$1" $#; ADMIN_TOKEN=$2; shift 2 ;;
    --catalog-file) need_value "$1" $#; CATALOG_FILE=$2; shift 2 ;;
    --no-catalog) NO_CATALOG=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --check) CHECK=1; shift ;;
    --no-prompt) PROMPT=0; shift ;;
    *) die "$EXIT_PRECONDITION" "unknown argument '$1' (see --help)" ;;
  esac
done

[[ $DRY_RUN -eq 0 || $CHECK -eq 0 ]] ||
  die "$EXIT_PRECONDITION" "--dry-run and --check do not go together: --check already changes nothing"
[[ -z $CATALOG_FILE || $ADMIN_URL_FLAG -eq 0 ]] ||
  die "$EXIT_PRECONDITION" "give --admin-url or --catalog-file, not both"
[[ $NO_CATALOG -eq 0 || ($ADMIN_URL_FLAG -eq 0 && -z $CATALOG_FILE) ]] ||
  die "$EXIT_PRECONDITION" "--no-catalog does not go with --admin-url or --catalog-file"

# ---------------------------------------------------------------- the azd environment

# The values of `azd env get-values` this script reads (nothing is evaluated).
declare -A AZD_ENV=()
# azd finds its project (azure.yaml) from the directory it runs in: the repository root.
PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
azd_in_project() { (cd "$PROJECT_DIR" && azd "$@" </dev/null 2>/dev/null); }
readonly AZD_KEYS=' AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AIPROXY_IDENTITY_NAME AIPROXY_IDENTITY_PRINCIPAL_ID AIPROXY_ADMIN_URL AIPROXY_ADMIN_APP_NAME AIPROXY_ADMIN_TOKEN '

if command -v azd >/dev/null 2>&1; then
  if azd_values=$(azd_in_project env get-values); then
    while IFS= read -r line; do
      [[ $line =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
      key=${BASH_REMATCH[1]}
      value=${BASH_REMATCH[2]}
      [[ $AZD_KEYS == *" $key "* ]] || continue
      if [[ ${#value} -ge 2 && $value == \"*\" ]]; then
        value=${value:1:${#value}-2}
        value=${value//\\\"/\"}
        value=${value//\\\\/\\}
      fi
      AZD_ENV[$key]=$value
    done <<<"$azd_values"
    info "Read the azd environment (azd env get-values)."
  else
    info "azd env get-values found no azd environment here: using the exported variables."
  fi
  unset azd_values line key value
fi

env_value() { # env_value NAME: the exported variable, else azd's value
  if [[ -n ${!1:-} ]]; then printf '%s' "${!1}"; else printf '%s' "${AZD_ENV[$1]:-}"; fi
}
env_source() { # env_source NAME: where env_value found it, for the messages
  if [[ -n ${!1:-} ]]; then printf '%s' "$1"; else printf '%s (azd env get-values)' "$1"; fi
}

if [[ -z $SUBSCRIPTION ]]; then
  SUBSCRIPTION=$(env_value AZURE_SUBSCRIPTION_ID)
  [[ -z $SUBSCRIPTION ]] || info "Using subscription $SUBSCRIPTION from $(env_source AZURE_SUBSCRIPTION_ID)."
fi
if [[ -z $RESOURCE_GROUP ]]; then
  RESOURCE_GROUP=$(env_value AZURE_RESOURCE_GROUP)
  [[ -z $RESOURCE_GROUP ]] || info "Using resource group $RESOURCE_GROUP from $(env_source AZURE_RESOURCE_GROUP)."
fi
PRINCIPAL_FROM_ENV=0
if [[ -z $IDENTITY_NAME && -z $PRINCIPAL_ID && -z $CONTAINER_APP ]]; then
  env_identity=$(env_value AIPROXY_IDENTITY_NAME)
  env_principal=$(env_value AIPROXY_IDENTITY_PRINCIPAL_ID)
  if [[ -n $env_identity && (-n $RESOURCE_GROUP || -z $env_principal) ]]; then
    IDENTITY_NAME=$env_identity
    info "Using identity $IDENTITY_NAME from $(env_source AIPROXY_IDENTITY_NAME)."
  elif [[ -n $env_principal ]]; then
    PRINCIPAL_ID=$env_principal
    PRINCIPAL_FROM_ENV=1
    info "Using principal id $PRINCIPAL_ID from $(env_source AIPROXY_IDENTITY_PRINCIPAL_ID)."
  fi
fi

# Where the catalog comes from: file, admin (the admin API) or none.
TARGET_FLAGS=$((${#OPENAI_ACCOUNTS[@]} + ${#FOUNDRY_HUBS[@]} + ${#FOUNDRY_PROJECTS[@]} + ${#SEARCH_SERVICES[@]}))
CATALOG_SOURCE="none"
if [[ $NO_CATALOG -eq 1 ]]; then
  CATALOG_SOURCE="none"
elif [[ -n $CATALOG_FILE ]]; then
  CATALOG_SOURCE="file"
elif [[ $ADMIN_URL_FLAG -eq 1 ]]; then
  CATALOG_SOURCE="admin"
elif [[ $TARGET_FLAGS -eq 0 ]]; then
  ADMIN_URL=$(env_value AIPROXY_ADMIN_URL)
  if [[ -n $ADMIN_URL ]]; then
    CATALOG_SOURCE="admin"
    info "Using the admin API at $ADMIN_URL from $(env_source AIPROXY_ADMIN_URL)."
  fi
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

CATALOG_LABEL=""
RESOURCES_URL=""
if [[ $CATALOG_SOURCE == admin ]]; then
  # The admin API lives at the root of the admin origin, whatever path the URL has.
  [[ $ADMIN_URL =~ ^([Hh][Tt][Tt][Pp][Ss]?)://([^/?#]+) ]] ||
    die "$EXIT_PRECONDITION" "admin URL '$ADMIN_URL' is not an http(s) URL (azd output AIPROXY_ADMIN_URL, https://<control plane app>.<region>.azurecontainerapps.io)"
  admin_scheme=${BASH_REMATCH[1],,}
  admin_authority=${BASH_REMATCH[2]##*@}
  if [[ $admin_authority == \[* ]]; then admin_host=${admin_authority%%]*}]; else admin_host=${admin_authority%%:*}; fi
  if [[ $admin_scheme == http && ! ${admin_host,,} =~ ^(localhost|127\.[0-9.]+|\[::1\])$ ]]; then
    die "$EXIT_PRECONDITION" "admin URL '$ADMIN_URL' is plain http to another host: the admin token would travel in clear text. Use https (plain http is accepted on loopback only)"
  fi
  RESOURCES_URL="$admin_scheme://$admin_authority/admin/api/v1/resources"
  CATALOG_LABEL=$RESOURCES_URL

  # The token: flag, variable, the admin app's secret, azd's parameter, terminal. Never printed.
  if [[ -z $ADMIN_TOKEN ]]; then
    ADMIN_TOKEN=$(env_value AIPROXY_ADMIN_TOKEN)
    [[ -z $ADMIN_TOKEN ]] || info "Using the admin token from $(env_source AIPROXY_ADMIN_TOKEN)."
  fi
  admin_app=$(env_value AIPROXY_ADMIN_APP_NAME)
  if [[ -z $ADMIN_TOKEN && -n $admin_app && -n $RESOURCE_GROUP ]] && command -v az >/dev/null 2>&1; then
    secret_args=(containerapp secret show --name "$admin_app" --resource-group "$RESOURCE_GROUP")
    [[ -z $SUBSCRIPTION ]] || secret_args+=(--subscription "$SUBSCRIPTION")
    secret_args+=(--secret-name admin-token --query value --output tsv)
    if ADMIN_TOKEN=$(az "${secret_args[@]}" </dev/null 2>/dev/null); then
      ADMIN_TOKEN=${ADMIN_TOKEN//[$'\r\n']/}
      [[ -z $ADMIN_TOKEN ]] || info "Using the admin token from the admin-token secret of container app $admin_app."
    else
      ADMIN_TOKEN=""
    fi
    unset secret_args
  fi
  if [[ -z $ADMIN_TOKEN ]] && command -v azd >/dev/null 2>&1; then
    if param=$(azd_in_project env config get infra.parameters.adminToken); then
      param=${param//[$'\r\n']/}
      [[ ! $param =~ ^\"([^\"\\]*)\"$ ]] || param=${BASH_REMATCH[1]}
      # Recent azd versions keep secure parameters in a vault and answer with a reference.
      if [[ -n $param && ! $param =~ :// && ! $param =~ [[:space:]{}\"] ]]; then
        ADMIN_TOKEN=$param
        info "Using the admin token azd keeps (azd env config get infra.parameters.adminToken)."
      fi
    fi
    unset param
  fi
  if [[ -z $ADMIN_TOKEN ]] && interactive; then
    read -r -s -p "Admin token for $RESOURCES_URL (input hidden): " ADMIN_TOKEN || true
    echo >&2
  fi
  [[ -n $ADMIN_TOKEN ]] ||
    die "$EXIT_PRECONDITION" "no admin token to read the catalog at $RESOURCES_URL: export AIPROXY_ADMIN_TOKEN (docs/deploying.md shows how to read it; with AIPROXY_ADMIN_APP_NAME in the azd environment and az logged in, it is read from the app's admin-token secret), or pass --admin-token or --catalog-file, or name the targets yourself (--openai-account, --foundry-project, --search-service)"
elif [[ $CATALOG_SOURCE == file ]]; then
  [[ -f $CATALOG_FILE && -r $CATALOG_FILE ]] ||
    die "$EXIT_PRECONDITION" "--catalog-file '$CATALOG_FILE' is not a readable file"
  CATALOG_LABEL=$CATALOG_FILE
fi
if [[ $CATALOG_SOURCE != none ]] && ! command -v python3 >/dev/null 2>&1; then
  die "$EXIT_PRECONDITION" "python3 is needed to read the catalog's JSON: install it, or name the targets yourself (--openai-account, --foundry-project, --search-service)"
fi

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

if [[ $TARGET_FLAGS -eq 0 && $CATALOG_SOURCE == none ]]; then
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
    die "$EXIT_PRECONDITION" "nothing to grant: no catalog to read (AIPROXY_ADMIN_URL is not in the azd environment nor exported; --admin-url or --catalog-file) and no --openai-account, --foundry-hub, --foundry-project or --search-service"
fi

[[ -n $TARGET_RESOURCE_GROUP ]] || TARGET_RESOURCE_GROUP=$RESOURCE_GROUP

readonly GUID_RE='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
readonly NAME_RE='^[A-Za-z0-9][A-Za-z0-9_.-]*$'
if [[ -n $PRINCIPAL_ID && ! $PRINCIPAL_ID =~ $GUID_RE ]]; then
  die "$EXIT_PRECONDITION" "--principal-id '$PRINCIPAL_ID' is not a GUID (it is the identity's object id, 'principalId' in az identity show)"
fi

# ---------------------------------------------------------------- running az

if [[ $DRY_RUN -eq 0 || $CATALOG_SOURCE != none ]] && ! command -v az >/dev/null 2>&1; then
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
  if [[ $CATALOG_SOURCE == none ]]; then
    note "# Dry run: the az commands $PROG would run. None was run."
  else
    note "# Dry run: the az commands $PROG would run. None was run (only the read-only lookups that derive the plan from the catalog)."
  fi
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
  if [[ $PRINCIPAL_FROM_ENV -eq 1 ]]; then
    PRINCIPAL_LABEL="principal $PRINCIPAL_ID (AIPROXY_IDENTITY_PRINCIPAL_ID)"
  else
    PRINCIPAL_LABEL="principal $PRINCIPAL_ID (given with --principal-id)"
  fi
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
    if [[ ${#principals[@]} -gt 1 && $USE_SYSTEM_ASSIGNED -eq 0 ]]; then
      # The templates attach two: the proxy's identity and the AcrPull-only one that pulls the
      # image. The proxy authenticates as the one its container names in AZURE_CLIENT_ID.
      app_client_id=""
      if az_capture resource show --resource-group "$RESOURCE_GROUP" --name "$CONTAINER_APP"         --resource-type Microsoft.App/containerApps "${SUB_ARGS[@]}"         --query "properties.template.containers[].env[?name=='AZURE_CLIENT_ID'].value[]" -o tsv; then
        app_client_id=$(printf '%s\n' "$AZ_OUT" | sed '/^[[:space:]]*$/d' | head -n1)
      fi
      if [[ $app_client_id =~ $GUID_RE ]] &&
        az_capture resource show --resource-group "$RESOURCE_GROUP" --name "$CONTAINER_APP"           --resource-type Microsoft.App/containerApps "${SUB_ARGS[@]}"           --query 'identity.userAssignedIdentities.*.[principalId, clientId]' -o tsv; then
        while IFS=$'\t' read -r p c; do
          if [[ -n $p && ${c,,} == "${app_client_id,,}" ]]; then
            principals=("$p")
            PRINCIPAL_LABEL="user-assigned identity of container app '$CONTAINER_APP' (its AZURE_CLIENT_ID $app_client_id)"
            break
          fi
        done <<<"$AZ_OUT"
      fi
    fi
    [[ ${#principals[@]} -eq 1 ]] ||
      die "$EXIT_PRECONDITION" "container app '$CONTAINER_APP' has ${#principals[@]} user-assigned identities and its container names none of them in AZURE_CLIENT_ID: name the one the proxy uses with --identity-name"
    PRINCIPAL_ID=${principals[0]}
  fi
fi

if [[ $DRY_RUN -eq 0 ]]; then
  [[ $PRINCIPAL_ID =~ $GUID_RE ]] ||
    die "$EXIT_PRECONDITION" "the identity lookup returned '$PRINCIPAL_ID', not a principal id"
  note "Identity: $PRINCIPAL_LABEL, principal id $PRINCIPAL_ID"
fi


# ---------------------------------------------------------------- what to grant

# Assignments to make, in order, as "ROLE_ID SCOPE" (each once, compared case-insensitively),
# with every reason for it.
ASSIGNMENTS=()
declare -A REASONS=()
declare -A VERIFIED=() # lower-cased scopes a lookup already showed to exist
UNMATCHED=()
SKIPPED=()

add_assignment() { # add_assignment ROLE SCOPE REASON
  local entry="$1 $2" existing
  for existing in "${ASSIGNMENTS[@]}"; do
    if [[ ${existing,,} == "${entry,,}" ]]; then
      [[ $'\n'${REASONS[$existing]}$'\n' == *$'\n'"$3"$'\n'* ]] || REASONS[$existing]+=$'\n'"$3"
      return 0
    fi
  done
  ASSIGNMENTS+=("$entry")
  REASONS[$entry]=$3
}

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

for value in "${OPENAI_ACCOUNTS[@]}"; do
  scope=$(account_scope "$value" --openai-account)
  add_assignment "$ROLE_OPENAI_USER" "$scope" "--openai-account $value"
done
for value in "${FOUNDRY_HUBS[@]}"; do
  scope=$(account_scope "$value" --foundry-hub)
  add_assignment "$ROLE_OPENAI_USER" "$scope" "--foundry-hub $value"
done
for value in "${FOUNDRY_PROJECTS[@]}"; do
  scope=$(project_scope "$value")
  add_assignment "$ROLE_AI_USER" "$scope" "--foundry-project $value"
  [[ $scope =~ $PROJECT_ID_RE ]] &&
    add_assignment "$ROLE_OPENAI_USER" "${BASH_REMATCH[1]}" "--foundry-project $value (its hub: the agents call the hub's models)"
done
for value in "${SEARCH_SERVICES[@]}"; do
  scope=$(search_scope "$value")
  add_assignment "$ROLE_SEARCH_READER" "$scope" "--search-service $value"
done
shopt -u nocasematch

# ---------------------------------------------------------------- the catalog

# Reads the resource list (the admin API's GET /admin/api/v1/resources, or a file holding the
# same JSON array) and prints one line per resource, fields separated by \x1f: name, type,
# endpoint, use_managed_identity, identity_client_id. The admin token comes in the environment,
# never on a command line, and is sent only to the admin URL (redirects are refused).
# Exit status: 3 unreachable or unreadable, 4 token refused, 5 not the expected JSON.
readonly CATALOG_PY='
import json, os, sys, urllib.error, urllib.parse, urllib.request

kind, source = sys.argv[1], sys.argv[2]

def fail(status, message):
    print(message, file=sys.stderr)
    sys.exit(status)

def api_message(body):
    try:
        return json.loads(body)["error"]["message"]
    except Exception:
        return body[:200].decode("utf-8", "replace").strip() or "(empty body)"

if kind == "file":
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        fail(3, "cannot read %s: %s" % (source, e.strerror))
else:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    handlers = [NoRedirect()]
    host = (urllib.parse.urlsplit(source).hostname or "").lower()
    if host == "localhost" or host.startswith("127.") or host == "::1":
        handlers.append(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(source, headers={
        "Authorization": "Bearer " + os.environ.get("AIPROXY_RBAC_ADMIN_TOKEN", ""),
        "Accept": "application/json",
    })
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=30) as response:
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        message = api_message(e.read())
        if e.code in (401, 403):
            fail(4, "the admin API refused the admin token (HTTP %d: %s)" % (e.code, message))
        fail(3, "the admin API answered HTTP %d for %s: %s" % (e.code, source, message))
    except (urllib.error.URLError, OSError, ValueError) as e:
        fail(3, "cannot reach the admin API at %s: %s" % (source, getattr(e, "reason", e)))

try:
    data = json.loads(text)
except ValueError as e:
    fail(5, "%s is not JSON: %s" % (source, e))
if isinstance(data, dict) and isinstance(data.get("resources"), list):
    data = data["resources"]
if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
    fail(5, "%s is not a list of resources (the JSON array GET /admin/api/v1/resources returns)" % source)

def field(value):
    text = "" if value is None else str(value)
    return "".join(" " if c in "\x1f\t\r\n" else c for c in text)

for r in data:
    print("\x1f".join([
        field(r.get("friendly_name") or r.get("id") or "(unnamed)"),
        field(r.get("model_type")).lower().replace("_", "-"),
        field(r.get("endpoint_url")),
        "true" if r.get("use_managed_identity") is True else "false",
        field(r.get("identity_client_id")),
    ]))
'

# The accounts and search services of the subscription, by host, read once when needed.
readonly ACCOUNT_QUERY="[].[id, properties.customSubDomainName, properties.endpoint, join(' ', values(properties.endpoints || \`{}\`))]"
readonly SEARCH_QUERY='[].[id, name]'
declare -A ACCOUNT_BY_HOST=()
declare -A SEARCH_BY_NAME=()
ACCOUNTS_READ=0
SEARCH_READ=0
LOOKUP_SUB_ARGS=()
if [[ $SUB_ID =~ $GUID_RE ]]; then
  LOOKUP_SUB_ARGS=(--subscription "$SUB_ID")
elif [[ -n $SUBSCRIPTION ]]; then
  LOOKUP_SUB_ARGS=(--subscription "$SUBSCRIPTION") # dry run: not resolved, az resolves it
fi
SUB_LABEL=${SUBSCRIPTION:-"(the az CLI's current one)"}
[[ ! $SUB_ID =~ $GUID_RE ]] || SUB_LABEL=$SUB_ID

url_host() { # url_host URL: its host, lower-cased
  local rest=${1#*://}
  rest=${rest%%[/?#]*}
  rest=${rest##*@}
  rest=${rest%%:*}
  printf '%s' "${rest,,}"
}

index_account_host() { # index_account_host HOST ACCOUNT_ID
  local host=${1,,} current
  [[ -n $host && $host != none ]] || return 0
  current=${ACCOUNT_BY_HOST[$host]:-}
  if [[ -z $current ]]; then
    ACCOUNT_BY_HOST[$host]=$2
  elif [[ ${current,,} != "${2,,}" ]]; then
    ACCOUNT_BY_HOST[$host]="?"
  fi
}

read_accounts() {
  [[ $ACCOUNTS_READ -eq 0 ]] || return 0
  ACCOUNTS_READ=1
  local line id subdomain endpoint endpoints url
  az_capture cognitiveservices account list "${LOOKUP_SUB_ARGS[@]}" --query "$ACCOUNT_QUERY" -o tsv ||
    die "$EXIT_PRECONDITION" "cannot list the Cognitive Services accounts of subscription $SUB_LABEL: $(az_error)"
  while IFS= read -r line; do
    [[ -n ${line//[[:space:]]/} ]] || continue
    IFS=$'\x1f' read -r id subdomain endpoint endpoints <<<"${line//$'\t'/$'\x1f'}"
    [[ $id == /subscriptions/* ]] || continue
    VERIFIED[${id,,}]=1
    if [[ -n $subdomain && $subdomain != None ]]; then
      index_account_host "$subdomain.openai.azure.com" "$id"
      index_account_host "$subdomain.cognitiveservices.azure.com" "$id"
      index_account_host "$subdomain.services.ai.azure.com" "$id"
    fi
    for url in $endpoint $endpoints; do
      [[ $url == *://* ]] && index_account_host "$(url_host "$url")" "$id"
    done
  done <<<"$AZ_OUT"
}

read_search_services() {
  [[ $SEARCH_READ -eq 0 ]] || return 0
  SEARCH_READ=1
  local line id name
  az_capture resource list "${LOOKUP_SUB_ARGS[@]}" --resource-type Microsoft.Search/searchServices --query "$SEARCH_QUERY" -o tsv ||
    die "$EXIT_PRECONDITION" "cannot list the search services of subscription $SUB_LABEL: $(az_error)"
  while IFS=$'\t' read -r id name; do
    [[ $id == /subscriptions/* && -n $name ]] || continue
    VERIFIED[${id,,}]=1
    SEARCH_BY_NAME[${name,,}]=$id
  done <<<"$AZ_OUT"
}

scope_exists() { # scope_exists SCOPE: a read-only lookup; 1 when not found
  if az_capture resource show --ids "$1" --query id -o tsv; then
    VERIFIED[${1,,}]=1
    return 0
  fi
  az_error_has "ResourceNotFound|was not found|could not be found|ResourceGroupNotFound|ParentResourceNotFound" && return 1
  die "$EXIT_PRECONDITION" "cannot read $1: $(az_error)"
}

derive() { # derive NAME TYPE ENDPOINT IDENTITY_CLIENT_ID: the roles one catalog resource needs
  local name=$1 type=$2 endpoint=$3 client_id=$4
  local label="'$name' ($type, $endpoint)" host path account project service rest hint
  if [[ $type == mcp-server ]]; then
    SKIPPED+=("$label: an MCP server is not an Azure RBAC target (no Entra ID scope)")
    return
  fi
  if [[ -n $client_id ]]; then
    SKIPPED+=("$label: it authenticates as its own user-assigned identity (identity_client_id $client_id), not the proxy's. Grant that identity the role: $PROG --principal-id <its principal id> with --openai-account, --foundry-project or --search-service")
    return
  fi
  if [[ ! $endpoint =~ ^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]+ ]]; then
    UNMATCHED+=("$label: the endpoint is not an http(s) URL")
    return
  fi
  host=$(url_host "$endpoint")
  rest=${endpoint#*://}
  path=/
  [[ $rest != */* ]] || path=/${rest#*/}
  case $type in
    foundry-model | ai-inference | foundry-agent)
      read_accounts
      account=${ACCOUNT_BY_HOST[$host]:-}
      if [[ -z $account ]]; then
        case $type in
          foundry-model) hint="or name it: --openai-account <its resource id>" ;;
          foundry-agent) hint="or name it: --foundry-project <the project's resource id>" ;;
          *) hint="or assign Cognitive Services User ($ROLE_CS_USER) on it by hand" ;;
        esac
        UNMATCHED+=("$label: no Cognitive Services account in subscription $SUB_LABEL has the host $host (as custom subdomain or endpoint). If it is in another subscription, run again with --subscription <that one>, $hint")
        return
      fi
      if [[ $account == "?" ]]; then
        UNMATCHED+=("$label: more than one account in subscription $SUB_LABEL answers on $host")
        return
      fi
      case $type in
        foundry-model) add_assignment "$ROLE_OPENAI_USER" "$account" "$label" ;;
        ai-inference) add_assignment "$ROLE_CS_USER" "$account" "$label" ;;
        foundry-agent)
          project=""
          if [[ ${path,,} =~ ^/api/projects/[^/?#]+ ]]; then
            project=${path:14}
            project=${project%%[/?#]*}
          fi
          if [[ -z $project ]]; then
            UNMATCHED+=("$label: not a Foundry project endpoint (https://<account>.services.ai.azure.com/api/projects/<project>)")
            return
          fi
          if ! scope_exists "$account/projects/$project"; then
            UNMATCHED+=("$label: account ${account##*/} has no project '$project'")
            return
          fi
          add_assignment "$ROLE_AI_USER" "$account/projects/$project" "$label"
          add_assignment "$ROLE_OPENAI_USER" "$account" "$label, whose agents call the hub's models"
          ;;
      esac
      ;;
    azure-ai-search)
      if [[ ! $host =~ ^([a-z0-9][a-z0-9-]*)\.search\.(windows\.net|azure\.us|azure\.cn)$ ]]; then
        UNMATCHED+=("$label: not a search service endpoint (https://<service>.search.windows.net)")
        return
      fi
      service=${BASH_REMATCH[1]}
      read_search_services
      if [[ -z ${SEARCH_BY_NAME[$service]:-} ]]; then
        UNMATCHED+=("$label: no search service named '$service' in subscription $SUB_LABEL. If it is in another subscription, run again with --subscription <that one>, or name it: --search-service <its resource id>")
        return
      fi
      add_assignment "$ROLE_SEARCH_READER" "${SEARCH_BY_NAME[$service]}" "$label"
      ;;
    *) UNMATCHED+=("$label: unknown resource type '$type'") ;;
  esac
}

CATALOG_TOTAL=0
CATALOG_MI=0
if [[ $CATALOG_SOURCE != none ]]; then
  catalog_kind="file" catalog_ref=$CATALOG_FILE
  [[ $CATALOG_SOURCE != admin ]] || catalog_kind="url" catalog_ref=$RESOURCES_URL
  catalog_status=0
  catalog=$(AIPROXY_RBAC_ADMIN_TOKEN=$ADMIN_TOKEN python3 -c "$CATALOG_PY" "$catalog_kind" "$catalog_ref" 2>"$AZ_ERR_FILE") ||
    catalog_status=$?
  ADMIN_TOKEN=""
  if [[ $catalog_status -ne 0 ]]; then
    catalog_error=$(head -c 600 "$AZ_ERR_FILE")
    case $catalog_status in
      4) die "$EXIT_PRECONDITION" "$catalog_error. Check AIPROXY_ADMIN_TOKEN (the admin-token secret of the control plane app, see docs/deploying.md)" ;;
      3) die "$EXIT_PRECONDITION" "$catalog_error${RESOURCES_URL:+. Is the control plane up, and may this machine reach its admin port (AIPROXY_ADMIN_ALLOWED_IP_RANGES)? Or use --catalog-file}" ;;
      *) die "$EXIT_PRECONDITION" "${catalog_error:-could not read the catalog (python3 exited with $catalog_status)}" ;;
    esac
  fi
  while IFS=$'\x1f' read -r r_name r_type r_endpoint r_mi r_client; do
    [[ -n $r_name ]] || continue
    CATALOG_TOTAL=$((CATALOG_TOTAL + 1))
    [[ $r_mi == true ]] || continue
    CATALOG_MI=$((CATALOG_MI + 1))
    derive "$r_name" "$r_type" "$r_endpoint" "$r_client"
  done <<<"$catalog"
  unset catalog
fi

# ---------------------------------------------------------------- the plan

role_name() {
  case $1 in
    "$ROLE_OPENAI_USER") printf 'Cognitive Services OpenAI User' ;;
    "$ROLE_AI_USER") printf 'Azure AI User' ;;
    "$ROLE_CS_USER") printf 'Cognitive Services User' ;;
    "$ROLE_SEARCH_READER") printf 'Search Index Data Reader' ;;
  esac
}

say() { # say LINE: the plan's lines; comments in a dry run, so its output stays a runnable script
  if [[ $DRY_RUN -eq 1 ]]; then printf '# %s\n' "$*"; else printf '%s\n' "$*"; fi
}

if [[ $CATALOG_SOURCE != none ]]; then
  say "Catalog: $CATALOG_TOTAL resource(s) in $CATALOG_LABEL, $CATALOG_MI with managed identity."
fi
if [[ $DRY_RUN -eq 1 ]]; then
  say "Plan: ${#ASSIGNMENTS[@]} role assignment(s) for $PRINCIPAL_LABEL (\${PRINCIPAL_ID})"
else
  say "Plan: ${#ASSIGNMENTS[@]} role assignment(s) for $PRINCIPAL_LABEL ($PRINCIPAL_ID)"
fi
for entry in "${ASSIGNMENTS[@]}"; do
  say "  $(role_name "${entry%% *}") on ${entry#* }"
  while IFS= read -r reason; do
    say "      why: $reason"
  done <<<"${REASONS[$entry]}"
done
if [[ ${#UNMATCHED[@]} -gt 0 ]]; then
  say "Not matched, so no role for them (${#UNMATCHED[@]}):"
  for item in "${UNMATCHED[@]}"; do say "  $item"; done
fi
if [[ ${#SKIPPED[@]} -gt 0 ]]; then
  say "Skipped (${#SKIPPED[@]}):"
  for item in "${SKIPPED[@]}"; do say "  $item"; done
fi

finish() { # finish STATUS-IF-ALL-WENT-WELL: the unmatched resources turn a success into EXIT_UNMATCHED
  if [[ $1 -eq 0 && ${#UNMATCHED[@]} -gt 0 ]]; then
    info "$PROG: ${#UNMATCHED[@]} catalog resource(s) matched no Azure resource and got no role (listed under \"Not matched\"). Fix their endpoints or grant them by hand (see --help), then run this again."
    exit "$EXIT_UNMATCHED"
  fi
  exit "$1"
}

if [[ ${#ASSIGNMENTS[@]} -eq 0 ]]; then
  if [[ ${#UNMATCHED[@]} -eq 0 ]]; then
    say "Nothing to grant: no resource in the catalog uses managed identity. Add resources with \"Use Managed Identity\" in the admin console, then run this again."
  fi
  finish 0
fi

# Every distinct scope exists? (checked for all before anything is created; a lookup above
# may already have shown it)
SCOPES=()
for entry in "${ASSIGNMENTS[@]}"; do
  scope=${entry#* }
  [[ -z ${VERIFIED[${scope,,}]:-} ]] || continue
  seen=0
  for s in "${SCOPES[@]}"; do [[ ${s,,} == "${scope,,}" ]] && seen=1; done
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
absent=0
[[ $CHECK -eq 0 ]] || note "Check (nothing is changed):"
[[ $CHECK -eq 1 || $DRY_RUN -eq 1 ]] || note "Applying:"
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
    if [[ $CHECK -eq 1 ]]; then printf '  present  %s\n' "$label"; else printf '  exists   %s\n' "$label"; fi
    existed=$((existed + 1))
    continue
  fi
  if [[ $CHECK -eq 1 ]]; then
    printf '  MISSING  %s\n' "$label"
    absent=$((absent + 1))
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
  finish 0
fi

if [[ $CHECK -eq 1 ]]; then
  note "Check: $existed present, $absent missing, $failed could not be listed."
  [[ $failed -eq 0 ]] || exit "$EXIT_ASSIGN_FAILED"
  if [[ $absent -gt 0 ]]; then
    note "Run $PROG without --check to create the missing ones."
    exit "$EXIT_MISSING"
  fi
  finish 0
fi

note "Summary: $created created, $existed already existed, $failed failed."
if [[ $failed -gt 0 ]]; then
  exit "$EXIT_ASSIGN_FAILED"
fi
if [[ $CATALOG_SOURCE == none ]]; then
  note "Role assignments can take a few minutes to take effect. Then add resources with \"Use Managed Identity\" in the admin console."
else
  note "Role assignments can take a few minutes to take effect. After adding more resources with \"Use Managed Identity\", run this again."
fi
finish 0
