#!/bin/sh
# kpiguard's container entrypoint: read tokens from files (Docker secrets), migrate, then serve on all
# interfaces. KPIGUARD_<SCOPE>_TOKENS_FILE names a file holding the scope's tokens (comma-separated, a
# trailing newline is fine); it wins over KPIGUARD_<SCOPE>_TOKENS. With no token at all the public bind
# is refused by kpiguard itself unless KPIGUARD_ALLOW_PUBLIC_WITHOUT_AUTH=true.
set -eu

for scope in ADMIN INGEST WEBHOOK; do
  file_var="KPIGUARD_${scope}_TOKENS_FILE"
  eval "file=\${$file_var:-}"
  if [ -n "$file" ]; then
    if [ ! -r "$file" ]; then
      echo "docker-entrypoint: $file_var: $file is not a readable file" >&2
      exit 2
    fi
    tokens=$(tr -d '\r' < "$file" | tr '\n' ',' | sed 's/,*$//')
    export "KPIGUARD_${scope}_TOKENS=$tokens"
    unset "$file_var"
  fi
done

if [ "$#" -gt 0 ]; then
  exec "$@"
fi
kpiguard db upgrade
exec kpiguard serve --host 0.0.0.0
