#!/usr/bin/env bash
# What the tests and the benchmarks need before they run (sourced by tests/run.sh and benchmarks/run.sh):
# the package with its test extras, PostgreSQL up, and Debian packages for the commands named as
# COMMAND:PACKAGE arguments, installed when the command is missing (as root; otherwise a warning).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "prepare: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

need=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "prepare: installing ${need[*]} from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "prepare: ${need[*]} missing and not root: what needs them fails or is left out" >&2
  fi
fi
