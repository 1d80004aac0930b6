#!/usr/bin/env bash
# Drops per-test databases left behind by interrupted test runs.
set -euo pipefail
server=$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/postgres")))' "$DATABASE_URL")
for db in $(psql "$server" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'honeydue\_test\_%'"); do
  psql "$server" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done
