#!/usr/bin/env bash
# The container image's build and layout, without a Docker engine: runs the
# exact cargo command the Dockerfile's builder stage runs (release, --locked,
# --target for this machine's architecture) for the shim and one function,
# checks the binaries need nothing the distroless/cc base lacks, lays them
# out as the final stage does (/shim, /var/task/<function>,
# /var/task/template.yaml) and starts the image's entrypoint with the
# image's environment: probes and a route must answer, SIGTERM must exit 0.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUNCTION=${FUNCTION:-api-health}
triple=$(rustc -vV | sed -n 's/^host: //p')
echo "image-check: cargo build --release --locked --target $triple -p honeydue-shim -p $FUNCTION" >&2
SQLX_OFFLINE=true cargo build -q --release --locked --target "$triple" \
  -p honeydue-shim --bin shim -p "$FUNCTION" --bin "$FUNCTION"
out="${CARGO_TARGET_DIR:-target}/$triple/release"

# distroless/cc-debian12 carries glibc and libgcc: nothing else may be linked.
for bin in "$out/shim" "$out/$FUNCTION"; do
  extra=$(ldd "$bin" | awk '{print $1}' | grep -Ev '^(linux-vdso\.so|libc\.so|libm\.so|libgcc_s\.so|libpthread\.so|libdl\.so|librt\.so|/lib64/ld-linux|/lib/ld-linux)' || true)
  if [ -n "$extra" ]; then
    echo "image-check: $bin links libraries the base image lacks: $extra" >&2
    exit 1
  fi
done

layout=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$layout"' EXIT
mkdir -p "$layout/var/task"
cp "$out/shim" "$layout/shim"
cp "$out/$FUNCTION" "$layout/var/task/$FUNCTION"
cp template.yaml "$layout/var/task/template.yaml"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
# The image's ENV and CMD (Dockerfile), with the listen addresses moved off
# 8080 and 9090.
( cd / && exec env -i PATH=/nonexistent SHIM_TEMPLATE="$layout/var/task/template.yaml" \
    SHIM_BIN_DIR="$layout/var/task" SHIM_FUNCTION="$FUNCTION" SHIM_LISTEN="127.0.0.1:$port" SHIM_ADMIN_LISTEN="127.0.0.1:$admin" \
    "$layout/shim" pod ) >"$layout/log" 2>&1 &
pid=$!
get() { python3 - "${2:-$port}" "$1" <<'PY'
import sys, time, urllib.request
port, path = sys.argv[1], sys.argv[2]
deadline = time.time() + 20
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit(f"{path} never answered 200")
    time.sleep(0.05)
PY
}
get /_shim/live "$admin" && get /_shim/ready "$admin" && get /api/health/ || { cat "$layout/log" >&2; exit 1; }
kill -TERM "$pid"
if ! wait "$pid"; then
  echo "image-check: the entrypoint did not exit 0 on SIGTERM" >&2
  cat "$layout/log" >&2
  exit 1
fi
echo "image-check: $FUNCTION image layout ok ($(du -h "$out/shim" | cut -f1) shim, $(du -h "$out/$FUNCTION" | cut -f1) function)" >&2
