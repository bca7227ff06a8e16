#!/usr/bin/env bash
# The project's one test command (README, .ci/run): installs what the tests need, makes sure
# PostgreSQL is up and the Prometheus/Alertmanager binaries (and docker-compose, to validate the compose
# file) are present, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/prepare.sh promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
  docker-compose:docker-compose  # docker-compose validates docker-compose.yml; no daemon is used
exec python3 -m pytest "$@"
