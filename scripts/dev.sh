#!/usr/bin/env bash
# `make dev`: build, ensure services, migrate, seed, serve the API locally.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/toolchain.sh)"
eval "$(scripts/services.sh)"
eval "$(scripts/pytools.sh cargo-lambda)"

PORT=${PORT:-9000}
DEMO_EMAIL=${DEMO_EMAIL:-demo@honeydue.local}
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-password}
ADMIN_EMAIL=${ADMIN_EMAIL:-admin@honeydue.local}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-password}

cargo build --workspace --bins
DEMO_EMAIL=$DEMO_EMAIL DEMO_PASSWORD=$DEMO_PASSWORD ADMIN_EMAIL=$ADMIN_EMAIL ADMIN_PASSWORD=$ADMIN_PASSWORD \
  AWS_LAMBDA_LOG_FORMAT=Text target/debug/migrate

{ grep -v '^\s*#' dev.env | grep -v '^\s*$'; echo "DATABASE_URL=$DATABASE_URL"; echo "REDIS_URL=$REDIS_URL"; } > .local/dev.env

base="http://127.0.0.1:$PORT/lambda-url"
cat <<BANNER

  honeyDue API (cargo lambda watch) on http://127.0.0.1:$PORT
  Each function is served under /lambda-url/<function>/ with its real path:
    curl $base/api-health/api/health/
    curl -X POST $base/api-auth/api/auth/login/ \\
         -H 'content-type: application/json' \\
         -d '{"email": "$DEMO_EMAIL", "password": "$DEMO_PASSWORD"}'
  Demo login: $DEMO_EMAIL / $DEMO_PASSWORD    Admin: $ADMIN_EMAIL / $ADMIN_PASSWORD
  Postgres: $DATABASE_URL    Redis: $REDIS_URL

BANNER
exec cargo lambda watch --env-file .local/dev.env --invoke-address 127.0.0.1 --invoke-port "$PORT"
