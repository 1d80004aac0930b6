#!/usr/bin/env bash
# The production edge test (scripts/edge/edge_test.py): the rendered
# production overlay behind the real Traefik, every pod as its manifest's
# shim process. Needs DATABASE_URL and REDIS_URL (scripts/services.sh) and
# the debug build of the workspace (cargo build / cargo test).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/pytools.sh kubectl edge)"
exec "$ROOT/.local/tools/edge/bin/python" scripts/edge/edge_test.py
