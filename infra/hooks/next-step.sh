#!/bin/sh
# azd postprovision hook (and the end of the postdeploy hook): says what to run next, and runs
# it when asked to.
#
# The next step after `azd up` is ./scripts/setup-managed-identity-rbac.sh with no arguments: it
# reads the azd environment and grants the proxy's identity the roles its catalog needs. This
# prints that exact command. With AIPROXY_GRANT_RBAC=true (`azd env set AIPROXY_GRANT_RBAC true`)
# it runs the script itself, but only once the admin API answers at AIPROXY_ADMIN_URL/healthz
# (on the first `azd up` the provision step runs before the images are deployed).
#
# The admin token comes from AIPROXY_ADMIN_TOKEN, else from the admin app's `admin-token`
# secret (az, with AIPROXY_ADMIN_APP_NAME, AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION_ID).
# Never fails: a provision or deploy that worked stays a success; problems are printed with
# the command to run by hand.
set -u

readonly NEXT_COMMAND=./scripts/setup-managed-identity-rbac.sh
here=$(cd "$(dirname "$0")" && pwd)
rbac_script="$here/../../scripts/setup-managed-identity-rbac.sh"
admin_url=${AIPROXY_ADMIN_URL:-}

say() { echo "next-step: $*"; }
warn() { echo "next-step: $*" >&2; }

print_next_command() {
  say "Next: give the proxy's identity its roles on your AI resources. From this directory, run:"
  say ""
  say "    $NEXT_COMMAND"
  say ""
  say "(or 'azd env set AIPROXY_GRANT_RBAC true' and the next 'azd up' / 'azd provision' runs it for you)"
}

# admin_answers: the admin API's /healthz says "ok" (a placeholder image or nothing at all does not).
admin_answers() {
  [ -n "$admin_url" ] || return 1
  if command -v curl >/dev/null 2>&1; then
    body=$(curl --silent --show-error --fail --max-time 10 "$admin_url/healthz" 2>/dev/null) || return 1
  elif command -v wget >/dev/null 2>&1; then
    body=$(wget --quiet --timeout=10 --output-document=- "$admin_url/healthz" 2>/dev/null) || return 1
  else
    return 1
  fi
  [ "$body" = "ok" ]
}

# admin_token: prints the admin token, from the environment or the admin app's secret.
admin_token() {
  if [ -n "${AIPROXY_ADMIN_TOKEN:-}" ]; then
    printf '%s' "$AIPROXY_ADMIN_TOKEN"
    return 0
  fi
  command -v az >/dev/null 2>&1 || return 1
  [ -n "${AIPROXY_ADMIN_APP_NAME:-}" ] && [ -n "${AZURE_RESOURCE_GROUP:-}" ] || return 1
  az containerapp secret show --name "$AIPROXY_ADMIN_APP_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
    ${AZURE_SUBSCRIPTION_ID:+--subscription "$AZURE_SUBSCRIPTION_ID"} \
    --secret-name admin-token --query value --output tsv 2>/dev/null
}

case ${AIPROXY_GRANT_RBAC:-} in
  true | TRUE | True | 1 | yes) ;;
  *)
    print_next_command
    exit 0
    ;;
esac

if ! admin_answers; then
  warn "AIPROXY_GRANT_RBAC is true, but the admin API does not answer at ${admin_url:-<AIPROXY_ADMIN_URL unset>}/healthz yet"
  warn "(the images are deployed after the provision step, or your address is not in AIPROXY_ADMIN_ALLOWED_IP_RANGES)."
  print_next_command
  exit 0
fi

if ! token=$(admin_token) || [ -z "$token" ]; then
  warn "AIPROXY_GRANT_RBAC is true, but the admin token could not be read: set AIPROXY_ADMIN_TOKEN, or install az and run 'az login'."
  print_next_command
  exit 0
fi

say "AIPROXY_GRANT_RBAC is true and the admin API answers: running $NEXT_COMMAND"
if AIPROXY_ADMIN_TOKEN="$token" "$rbac_script" </dev/null; then
  say "roles granted (the script is safe to run again: $NEXT_COMMAND)"
else
  status=$?
  warn "$NEXT_COMMAND exited with status $status; fix what it reported above, then run it again:"
  warn "    $NEXT_COMMAND"
fi
exit 0
