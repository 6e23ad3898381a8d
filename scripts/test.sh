#!/usr/bin/env bash
# Runs every check and test of hpcsera: formatting, lints, the OpenAPI validation, and the
# whole test suite twice — on SQLite and on a real PostgreSQL. Installs and starts what the
# tests need (as root on Debian): PostgreSQL when none answers on 127.0.0.1:5432, Python's
# openapi-spec-validator, roc-validator and rocrate, the spec checks' tools (openapi-python-client,
# openapi-generator with Java, schemathesis, pytest), Chromium and chromedriver for the web UI's browser tests,
# systemd-analyze and promtool for the deployment files and metrics, and (scripts/setup-slurm.sh) a single-node Slurm for the agent's
# end-to-end tests, which then run against the real Slurm (and fail, never skip, without it).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }
as_root() { [ "$(id -u)" = 0 ]; }
apt_install() {
  if ! as_root; then echo "need root to install: $*" >&2; return 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

PG_URL="${HPCSERA_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/test}"
# The tests' PostgreSQL databases are named after this run (hpcsera_t_<run>_…), so that this
# script drops only its own and never those of another run on the same machine.
export HPCSERA_TEST_RUN="${HPCSERA_TEST_RUN:-r$$}"

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  say "PostgreSQL is not answering on 127.0.0.1:5432: installing and starting it"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql postgresql-client
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  pg_isready -h 127.0.0.1 -p 5432
  runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'"
  runuser -u postgres -- psql -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || runuser -u postgres -- createdb test
}

drop_test_databases() {
  psql "$PG_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'hpcsera\_t\_${HPCSERA_TEST_RUN}\_%'" 2>/dev/null \
    | while read -r db; do psql "$PG_URL" -qc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true; done
}

ensure_openapi_validator() {
  python3 -c 'import openapi_spec_validator' 2>/dev/null && return 0
  say "installing openapi-spec-validator (PyPI)"
  python3 -m pip install -q --disable-pip-version-check openapi-spec-validator
}

# The provenance end-to-end tests check every manifest with the community's tools: roc-validator
# (RO-Crate 1.1 and the Process Run Crate profile) and rocrate; without them they fail, never
# skip. The install is bounded (10 minutes).
ensure_rocrate_tools() {
  python3 -c 'import rocrate_validator, rocrate' 2>/dev/null && return 0
  say "installing roc-validator and rocrate (PyPI) for the provenance tests"
  timeout 600 python3 -m pip install -q --disable-pip-version-check roc-validator rocrate
}

# The web UI's browser tests (crates/hpcsera/tests/ui) drive headless Chromium over WebDriver;
# in CI they fail, never skip, without it. The install is bounded (15 minutes).
ensure_chromium() {
  command -v chromedriver >/dev/null && command -v chromium >/dev/null && return 0
  say "installing chromium and chromium-driver (Debian) for the browser tests"
  if ! as_root; then echo "need root to install chromium chromium-driver" >&2; return 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium chromium-driver >/dev/null
}

# The deployment files are checked with systemd's own verifier (`systemd-analyze verify`, no
# running systemd needed) and the metrics with Prometheus's `promtool check metrics`; the tests
# fail, never skip, without them. The installs are bounded (10 minutes each).
ensure_ops_tools() {
  command -v systemd-analyze >/dev/null || {
    say "installing systemd (Debian) for systemd-analyze verify"
    if ! as_root; then echo "need root to install systemd" >&2; return 1; fi
    if [ -z "${APT_UPDATED:-}" ]; then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends systemd >/dev/null
  }
  command -v promtool >/dev/null || {
    say "installing prometheus (Debian) for promtool check metrics"
    if ! as_root; then echo "need root to install prometheus" >&2; return 1; fi
    if [ -z "${APT_UPDATED:-}" ]; then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  }
}

# The spec checks and the Python SDK's tests (crates/hpcsera/tests/e2e/python.rs) run
# openapi-python-client, openapi-generator (PyPI's openapi-generator-cli: a bundled jar run by
# Java), schemathesis and pytest with pytest-asyncio, and build the SDK with hatchling; in CI
# they fail, never skip, without them. The installs are bounded (10 and 15 minutes).
ensure_python_tools() {
  if ! python3 -c 'import openapi_python_client, openapi_generator_cli, schemathesis, pytest, pytest_asyncio, hatchling, httpx' 2>/dev/null; then
    say "installing the spec checks' tools (PyPI)"
    timeout 600 python3 -m pip install -q --disable-pip-version-check openapi-python-client \
      openapi-generator-cli schemathesis pytest pytest-asyncio hatchling httpx
  fi
  command -v java >/dev/null && return 0
  say "installing Java (Debian) for openapi-generator"
  if ! as_root; then echo "need root to install default-jre-headless" >&2; return 1; fi
  if [ -z "${APT_UPDATED:-}" ]; then timeout 300 apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq default-jre-headless >/dev/null
}

# run_tests [cargo package/test selection]: the whole workspace when nothing is given.
run_tests() {
  [ $# -gt 0 ] || set -- --workspace
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

say "formatting"
cargo fmt --all -- --check

say "clippy"
cargo clippy --workspace --all-targets -- -D warnings

ensure_postgres
command -v psql >/dev/null || apt_install postgresql-client
trap drop_test_databases EXIT
ensure_openapi_validator
ensure_rocrate_tools
ensure_python_tools
# The examples' tests run curl and jq.
for tool in curl jq; do command -v "$tool" >/dev/null || apt_install "$tool"; done
# Signed approvals are tested against OpenSSH's own ssh-keygen, ssh-agent and ssh-add.
for tool in ssh-keygen ssh-agent ssh-add; do command -v "$tool" >/dev/null || apt_install openssh-client; done
ensure_chromium
ensure_ops_tools

say "OpenAPI: the checked-in spec is valid OpenAPI 3"
python3 -c 'import json, sys; from openapi_spec_validator import validate; validate(json.load(open("openapi.json"))); print("openapi.json is valid")'

say "single-node Slurm"
if as_root; then
  bash scripts/setup-slurm.sh
else
  echo "not root: using the Slurm that is there (sinfo must answer)"
fi
export HPCSERA_TEST_SLURM=1

say "tests on SQLite (agent end-to-end tests on the local adapter)"
HPCSERA_TEST_DATABASE_URL=sqlite run_tests

say "agent, CLI and code end-to-end tests on the real Slurm"
# One test binary (tests/e2e/main.rs); its agent, CLI, code and provenance modules are the Slurm-relevant
# ones, picked by module path (libtest filters, which nextest and cargo test both take).
HPCSERA_TEST_ADAPTER=slurm run_tests -p hpcsera --test e2e -- e2e:: cli:: code_e2e:: approval_e2e:: provenance_e2e:: resources_e2e::

say "web UI pages with a real agent (Chromium) on the real Slurm"
# The browser tests' agent_pages module: approval runs the job on Slurm, cancel reaches it.
HPCSERA_TEST_ADAPTER=slurm run_tests -p hpcsera --test ui -- agent_pages::

say "store and API tests on PostgreSQL ($PG_URL)"
HPCSERA_TEST_DATABASE_URL="$PG_URL" run_tests -p hpcsera-store -p hpcsera-server

say "web UI browser tests (Chromium) on PostgreSQL"
HPCSERA_TEST_DATABASE_URL="$PG_URL" run_tests -p hpcsera --test ui

say "all checks passed"
