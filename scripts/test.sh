#!/usr/bin/env bash
# Runs every test. Starts (or installs, then starts) what the tests need: PostgreSQL on
# 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379, the openai and azure-ai-agents Python
# SDKs (pinned below), Chromium and
# the admin console's npm packages; builds the binaries the end-to-end tests launch; runs the
# deployment tests and the admin console's tests, then `cargo test --workspace`, whose summary
# lines end the output.
#
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export AIPROXY_TEST_POSTGRES_URL="${AIPROXY_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export AIPROXY_TEST_REDIS_URL="${AIPROXY_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

apt_updated=""
apt_install() {
  if [[ -z "$apt_updated" ]]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  # psql creates the per-test databases of the end-to-end tests.
  command -v psql >/dev/null || apt_install postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "== installing PostgreSQL"
    apt_install postgresql postgresql-client
  fi
  local version hba
  version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    # The tests connect as postgres@127.0.0.1 without a password.
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  echo "== starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 0.2; done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
  exit 1
}

ensure_redis() {
  if command -v redis-cli >/dev/null && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  if ! command -v redis-server >/dev/null; then
    echo "== installing Redis"
    apt_install redis-server
  fi
  echo "== starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.2; done
  echo "Redis did not start on 127.0.0.1:6379" >&2
  exit 1
}

# The SDK tests' versions, pinned: a new release changes what the tests run against (pydantic
# 2.13 once broke one), so it comes in as a change of these lines, tested, not by surprise.
PYTHON_SDKS=(openai==3.63.0 azure-ai-agents==1.1.0 pydantic==2.13.4)
ensure_python_sdks() {
  if python3 - "${PYTHON_SDKS[@]}" 2>/dev/null <<'PY'; then return; fi
import sys
from importlib.metadata import version
sys.exit(any(version(name) != want for name, want in (p.split("==") for p in sys.argv[1:])))
PY
  echo "== installing the Python SDKs the SDK tests use: ${PYTHON_SDKS[*]}"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${PYTHON_SDKS[@]}"
}

ensure_postgres
ensure_redis
ensure_python_sdks

echo "== building the binaries the end-to-end tests launch"
cargo build --locked --workspace --bins

# After the build: one RBAC test runs the control plane just built.
echo "== deployment tests (RBAC script, hooks, infra offline checks)"
bash scripts/tests/run.sh

echo "== admin console (build, component tests, end to end in headless Chromium)"
bash scripts/admin-web-test.sh

echo "== cargo test"
cargo test --locked --workspace
