#!/usr/bin/env bash
# Sets every function image of a kustomize overlay to one release, as
# `kustomize edit set image honeydue/<function>=<registry>/<function>:<tag>`
# would for each function of template.yaml:
#   scripts/release.sh TAG [OVERLAY_DIR]        (make release TAG=...)
#   REGISTRY=registry.example.com/honeydue scripts/release.sh TAG
# The overlay's kustomization.yaml keeps its images between the lines
# "# BEGIN images" and "# END images"; REGISTRY defaults to the registry
# already written there. TAG must be immutable (a git SHA): dev, latest and
# unreleased are refused.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=${1:?usage: scripts/release.sh TAG [OVERLAY_DIR]}
OVERLAY=${2:-$ROOT/k3s/overlays/production}
case "$TAG" in
  dev|latest|unreleased) echo "release: TAG must be an immutable tag (a git SHA), not '$TAG'" >&2; exit 2 ;;
esac
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "release: '$TAG' is not a valid image tag" >&2; exit 2; }
python3 - "$OVERLAY/kustomization.yaml" "$ROOT/template.yaml" "$TAG" "${REGISTRY:-}" <<'PY'
import re, sys
path, template, tag, registry = sys.argv[1:5]
text = open(path).read()
m = re.search(r"^# BEGIN images[^\n]*\n(.*?)^# END images", text, re.S | re.M)
if not m:
    sys.exit(f"release: {path} has no '# BEGIN images' ... '# END images' block")
if not registry:
    found = re.search(r"newName: (\S+)/[a-z0-9-]+$", m.group(1), re.M)
    if not found:
        sys.exit("release: no registry in the images block; set REGISTRY")
    registry = found.group(1)
functions = sorted(set(re.findall(r"^\s*Binary:\s*(\S+)\s*$", open(template).read(), re.M)))
block = "images:\n" + "".join(
    f"  - name: honeydue/{f}\n    newName: {registry}/{f}\n    newTag: \"{tag}\"\n" for f in functions)
start, end = m.span(1)
open(path, "w").write(text[:start] + block + text[end:])
print(f"release: {len(functions)} images at {registry}/<function>:{tag} in {path}", file=sys.stderr)
PY
