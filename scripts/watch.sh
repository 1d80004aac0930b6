#!/usr/bin/env bash
# `make watch`: the same functions under `cargo lambda watch` (rebuild on
# change), each under /lambda-url/<function>/ on 127.0.0.1:9000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval "$(scripts/toolchain.sh)"
eval "$(scripts/services.sh)"
eval "$(scripts/pytools.sh cargo-lambda)"
cargo build -q -p migrate && AWS_LAMBDA_LOG_FORMAT=Text "${CARGO_TARGET_DIR:-target}"/debug/migrate >/dev/null
{ grep -v '^\s*#' dev.env | grep -v '^\s*$'; echo "DATABASE_URL=$DATABASE_URL"; echo "REDIS_URL=$REDIS_URL"; } > .local/dev.env
echo "cargo lambda watch on http://127.0.0.1:9000/lambda-url/<function>/<path>, e.g. /lambda-url/api-health/api/health/"
exec cargo lambda watch --env-file .local/dev.env --invoke-address 127.0.0.1 --invoke-port "${PORT:-9000}"
