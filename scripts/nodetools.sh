#!/usr/bin/env bash
# Node's Lambda runtime interface client (npm aws-lambda-ric, a native addon
# built from the package), installed on first use into .local/node-ric, and
# the variable the shim's tests read:
#   eval "$(scripts/nodetools.sh)"   # exports HONEYDUE_NODE_RIC=<dir>
#
# The addon compiles its own copies of curl and the AWS runtime C++ client,
# which needs Debian's cmake, autoconf, automake and libtool (installed here
# when missing), and one to five minutes on 2 cores the first time. npm 11 does
# not run install scripts by default, so the build is an explicit
# `npm rebuild aws-lambda-ric --foreground-scripts`. A marker holding the hash
# of scripts/node-ric/package*.json makes a second run a no-op.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC="$ROOT/scripts/node-ric"
DIR="$ROOT/.local/node-ric"
key=$(cat "$SRC"/package*.json | sha256sum | cut -c1-16)
marker="$DIR/.installed-$key"
if [ ! -f "$marker" ]; then
  for node_cmd in node npm; do
    command -v "$node_cmd" >/dev/null || { echo "nodetools: $node_cmd not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }
  done
  missing=()
  for pair in cmake:cmake autoconf:autoconf automake:automake libtoolize:libtool make:make g++:g++; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "nodetools: installing ${missing[*]}" >&2
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >&2
  fi
  rm -rf "$DIR" && mkdir -p "$DIR"
  cp "$SRC"/package.json "$SRC"/package-lock.json "$DIR"/
  echo "nodetools: installing aws-lambda-ric into ${DIR#"$ROOT"/} (native build, 1-5 min)" >&2
  ( cd "$DIR" && {
      npm ci --ignore-scripts --no-audit --no-fund
      npm rebuild aws-lambda-ric --foreground-scripts
    } ) >"$DIR/install.log" 2>&1 || { tail -40 "$DIR/install.log" >&2; echo "nodetools: build failed (log: ${DIR#"$ROOT"/}/install.log)" >&2; exit 1; }
  [ -f "$DIR/node_modules/aws-lambda-ric/dist/rapid-client.node" ] || \
    { echo "nodetools: the native addon was not built (log: ${DIR#"$ROOT"/}/install.log)" >&2; exit 1; }
  touch "$marker"
fi
echo "export HONEYDUE_NODE_RIC=\"$DIR\""
