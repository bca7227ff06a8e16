#!/usr/bin/env bash
# The benchmarks' one command: installs what they measure against (wrk, Debian's Pushgateway, the
# Prometheus/Alertmanager binaries of the Prometheus path row) when missing, then runs benchmarks/run.py
# with the given arguments (--quick, --only ROW, --out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "benchmarks/run.sh: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v prometheus-pushgateway >/dev/null 2>&1 || need+=(prometheus-pushgateway)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "benchmarks/run.sh: installing ${need[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "benchmarks/run.sh: ${need[*]} missing and not root: those peers are left out of the run" >&2
  fi
fi

exec python3 benchmarks/run.py "$@"
