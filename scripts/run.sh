#!/usr/bin/env bash
# Runs AI Proxy on the embedded defaults: the control plane (SQLite catalog under ./data,
# in-memory token cache) serving the admin console, and one edge, built in release mode. Prints the
# admin token and the URLs; Ctrl-C stops everything.
#
#   scripts/run.sh
#
# Any AIPROXY_* variable you export is honoured (see the README's configuration table).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The admin console: built when it is missing or older than its sources.
if [[ -f admin-web/package.json ]]; then
  if [[ ! -f admin-web/dist/index.html ]] || [[ -n "$(find admin-web/src admin-web/index.html admin-web/package.json -newer admin-web/dist/index.html 2>/dev/null | head -n 1)" ]]; then
    (cd admin-web && { [[ -d node_modules ]] || npm ci --no-audit --no-fund; } && npm run build)
  fi
fi

# The whole workspace, so features unify exactly as in the other builds (no second compile of shared crates).
cargo build --release --locked --workspace --bins

mkdir -p data
export AIPROXY_DATABASE_URL="${AIPROXY_DATABASE_URL:-sqlite://./data/aiproxy.db}"
admin_addr="${AIPROXY_ADMIN_ADDR:-127.0.0.1:8081}"
edge_addr="${AIPROXY_LISTEN_ADDR:-127.0.0.1:8080}"
grpc_addr="${AIPROXY_GRPC_ADDR:-127.0.0.1:50051}"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

./target/release/aiproxy-control-plane &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$admin_addr/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "the control plane failed to start" >&2; exit 1; }
  sleep 0.1
done

AIPROXY_EDGE_TOKEN="${AIPROXY_EDGE_TOKEN:-$(cat data/edge.token)}" \
AIPROXY_CONTROL_PLANE_URL="${AIPROXY_CONTROL_PLANE_URL:-http://$grpc_addr}" \
  ./target/release/aiproxy-edge &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$edge_addr/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

admin_token="${AIPROXY_ADMIN_TOKEN:-$(cat data/admin.token)}"
cat <<INFO

AI Proxy is running (embedded mode: SQLite in ./data, in-memory token cache).
  admin console  http://$admin_addr/   (sign in with the admin token)
  admin API      http://$admin_addr/admin/api/v1   (OpenAPI: /admin/api/v1/openapi.json)
  admin token    $admin_token
  edge (clients) http://$edge_addr/api/v1
  gRPC           http://$grpc_addr   (EdgeService, CatalogService)
Ctrl-C stops it.
INFO
wait -n
