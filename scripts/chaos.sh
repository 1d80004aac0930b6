#!/usr/bin/env bash
# Faults under load (scripts/chaos/chaos.py): `make chaos` runs it whole,
# `make test` with --short. Needs the debug build of the workspace and
# Postgres' and Redis' binaries (scripts/services.sh installs them); installs
# the rest (Traefik, kubectl, moto, aiosmtpd) on first use.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/pytools.sh kubectl edge)"
eval "$(scripts/pytools.sh moto aiosmtpd)"
export HONEYDUE_PYTHON=$ROOT/.local/venv/bin/python
exec "$ROOT/.local/tools/edge/bin/python" scripts/chaos/chaos.py "$@"
