#!/usr/bin/env bash
# `make dev`: build, ensure services, migrate, seed, serve the whole API on
# one port through the shim's gateway mode (routes from template.yaml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/toolchain.sh)"
eval "$(scripts/services.sh)"
eval "$(scripts/pytools.sh moto aiosmtpd)"

# A local S3-compatible server for uploads (moto), with the dev bucket.
if ! curl -s -o /dev/null http://127.0.0.1:55900/; then
  mkdir -p .local/s3
  nohup moto_server -H 127.0.0.1 -p 55900 > .local/s3/moto.log 2>&1 &
  for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:55900/ && break; sleep 0.1; done
fi
curl -s -o /dev/null -X PUT http://127.0.0.1:55900/honeydue-dev

# A local SMTP sink: delivered emails land in .local/mail/*.eml.
if ! (exec 3<>/dev/tcp/127.0.0.1/55025) 2>/dev/null; then
  nohup "$(dirname "$(command -v moto_server)")/python" shared/testkit/smtp_server.py 55025 .local/mail > .local/mail.log 2>&1 &
  sleep 1
fi

PORT=${PORT:-3000}
DEMO_EMAIL=${DEMO_EMAIL:-demo@honeydue.local}
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-password}
ADMIN_EMAIL=${ADMIN_EMAIL:-admin@honeydue.local}
ADMIN_PASSWORD=${ADMIN_PASSWORD:-admin-password}

cargo build --workspace --bins
DEMO_EMAIL=$DEMO_EMAIL DEMO_PASSWORD=$DEMO_PASSWORD ADMIN_EMAIL=$ADMIN_EMAIL ADMIN_PASSWORD=$ADMIN_PASSWORD \
  AWS_LAMBDA_LOG_FORMAT=Text "${CARGO_TARGET_DIR:-target}"/debug/migrate

# dev.env holds the local, non-secret settings; the service URLs come from
# scripts/services.sh. .local/dev.env is the same for `cargo lambda watch`.
{ grep -v '^\s*#' dev.env | grep -v '^\s*$'; echo "DATABASE_URL=$DATABASE_URL"; echo "REDIS_URL=$REDIS_URL"; } > .local/dev.env
set -a; . .local/dev.env; set +a

base="http://127.0.0.1:$PORT"
cat <<BANNER

  honeyDue API on $base  (shim gateway: every route of template.yaml)
    curl $base/api/health/
    curl -X POST $base/api/auth/login/ -H 'content-type: application/json' \\
         -d '{"email": "$DEMO_EMAIL", "password": "$DEMO_PASSWORD"}'
  Demo login: $DEMO_EMAIL / $DEMO_PASSWORD    Admin: $ADMIN_EMAIL / $ADMIN_PASSWORD
  Postgres: $DATABASE_URL    Redis: $REDIS_URL    S3: http://127.0.0.1:55900 (moto)
  Emails (codes, reminders, digests): .local/mail/*.eml, delivered every 5 s
  Scheduled functions: every one of template.yaml, invoked each minute (they
    serve the hour the event stands for, once); log: .local/jobs.log
  Shim: $base/_shim/ready  $base/_shim/metrics

BANNER
# The outbox dispatcher, every 5 seconds, the way a CronJob runs it.
( while sleep 5; do
    SMTP_HOST=127.0.0.1 SMTP_PORT=55025 SMTP_SECURITY=none AWS_LAMBDA_LOG_LEVEL=warn \
      "${CARGO_TARGET_DIR:-target}"/debug/shim invoke --function cron-email-dispatch --scheduled >/dev/null 2>>.local/dispatch.log || true
  done ) &
dispatcher=$!
# The other scheduled functions, every minute: each claims its hour (or day)
# in job_runs, so the repeats do nothing.
( while true; do
    for f in cron-task-reminders cron-overdue-reminders cron-warranty-reminders \
             cron-daily-digest cron-onboarding-emails cron-cleanup cron-push-dispatch; do
      AWS_LAMBDA_LOG_LEVEL=warn "${CARGO_TARGET_DIR:-target}"/debug/shim invoke --function "$f" --scheduled >/dev/null 2>>.local/jobs.log || true
    done
    sleep 60
  done ) &
trap 'kill $dispatcher $! 2>/dev/null' EXIT
"${CARGO_TARGET_DIR:-target}"/debug/shim gateway --listen "127.0.0.1:$PORT" --drain-delay 0 --concurrency 8
