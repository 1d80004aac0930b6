#!/usr/bin/env bash
# Python-packaged tools (cargo-lambda, ...) in a project-local venv under
# .local/venv, installed from PyPI on first use. Prints the PATH to use:
#   eval "$(scripts/pytools.sh cargo-lambda)"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.local/venv"
declare -A PINS=(
  [cargo-lambda]="cargo-lambda==1.9.2"
  [awslambdaric]="awslambdaric==4.2.2"
  [moto]="moto[server]==5.2.5"
  [aiosmtpd]="aiosmtpd==1.4.6"
)
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" >&2
fi
for tool in "$@"; do
  pin=${PINS[$tool]:-$tool}
  marker="$VENV/.installed-${pin//[^A-Za-z0-9._-]/_}"
  if [ ! -f "$marker" ]; then
    echo "pytools: installing $pin into $VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "$pin" >&2
    touch "$marker"
  fi
done
echo "export PATH=\"$VENV/bin:\$PATH\""
