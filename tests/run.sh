#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what the tests need, makes sure
# PostgreSQL is up and the Prometheus/Alertmanager binaries are present, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "tests/run.sh: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tests/run.sh: installing ${need[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "tests/run.sh: ${need[*]} missing and not root: the e2e and promtool tests will fail" >&2
  fi
fi

exec python3 -m pytest "$@"
