#!/bin/sh
# azd postdeploy hook. azd deploys a service to the one container app tagged with its name,
# which is the primary region's; this updates the other regions' control plane and edge apps
# to the images azd just deployed, so every region runs the same build. Then it runs the
# next-step hook (infra/hooks/next-step.sh), which prints or runs the RBAC script.
#
# Reads what azd exports to hooks: SERVICE_CONTROL_PLANE_IMAGE_NAME, SERVICE_EDGE_IMAGE_NAME,
# AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION_ID, and the Bicep outputs
# AIPROXY_SECONDARY_CONTROL_PLANE_APPS / AIPROXY_SECONDARY_EDGE_APPS (space-separated names).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
control_plane_image=${SERVICE_CONTROL_PLANE_IMAGE_NAME:-}
edge_image=${SERVICE_EDGE_IMAGE_NAME:-}
control_plane_apps=${AIPROXY_SECONDARY_CONTROL_PLANE_APPS:-}
edge_apps=${AIPROXY_SECONDARY_EDGE_APPS:-}
resource_group=${AZURE_RESOURCE_GROUP:-}
subscription=${AZURE_SUBSCRIPTION_ID:-}

failed=0

# update_apps IMAGE APP...: points each app at IMAGE (a new revision).
update_apps() {
  image=$1
  shift
  for app in "$@"; do
    if [ -z "$image" ]; then
      echo "postdeploy: WARNING: no image was deployed for $app's service; left as it is." >&2
      continue
    fi
    echo "postdeploy: $app -> $image"
    if ! az containerapp update --name "$app" --resource-group "$resource_group" \
      --subscription "$subscription" --image "$image" --output none; then
      echo "postdeploy: ERROR: could not update $app (is 'az login' done for this subscription?). 'azd provision' applies the images to every region too." >&2
      failed=1
    fi
  done
}

# roll_out: the other regions get the images the primary region's apps now run.
roll_out() {
  if [ -z "$control_plane_apps$edge_apps" ]; then
    echo "postdeploy: one region only; nothing to roll out."
    return 0
  fi
  if ! command -v az >/dev/null 2>&1; then
    echo "postdeploy: WARNING: the Azure CLI (az) is not installed, so the other regions still run their previous images." >&2
    echo "postdeploy: run 'azd provision' now: it applies the deployed images to every region." >&2
    return 0
  fi
  if [ -z "$resource_group" ] || [ -z "$subscription" ]; then
    echo "postdeploy: AZURE_RESOURCE_GROUP and AZURE_SUBSCRIPTION_ID are not set; is this running under azd?" >&2
    failed=1
    return 0
  fi
  # The app lists are space-separated names from Bicep: split them on purpose.
  # shellcheck disable=SC2086
  update_apps "$control_plane_image" $control_plane_apps
  # shellcheck disable=SC2086
  update_apps "$edge_image" $edge_apps
}

roll_out
/bin/sh "$here/next-step.sh" || true
exit "$failed"
