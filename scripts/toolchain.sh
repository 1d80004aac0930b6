#!/usr/bin/env bash
# Makes sure the build tools beyond the Rust toolchain are present (a fast
# linker) and prints the environment for cargo:
#   eval "$(scripts/toolchain.sh)"
set -euo pipefail
if ! command -v mold >/dev/null && command -v apt-get >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "toolchain: installing mold (fast linker)" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mold; } >&2 || true
fi
if command -v mold >/dev/null; then
  echo 'export RUSTFLAGS="-C link-arg=-fuse-ld=mold"'
else
  echo "toolchain: mold unavailable; linking with the default linker (slower)" >&2
  echo 'export RUSTFLAGS=""'
fi
