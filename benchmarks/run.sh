#!/usr/bin/env bash
# The benchmarks' one command: installs what they measure against (wrk, Debian's Pushgateway, the
# Prometheus/Alertmanager binaries of the Prometheus path row) when missing, then runs benchmarks/run.py
# with the given arguments (--quick, --only ROW, --out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
source tests/prepare.sh wrk:wrk prometheus-pushgateway:prometheus-pushgateway promtool:prometheus \
  prometheus-alertmanager:prometheus-alertmanager
exec python3 benchmarks/run.py "${args[@]}"
