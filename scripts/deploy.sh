#!/usr/bin/env bash
# Deploys a release to the k3s cluster of the current kube context:
#   TAG=<git sha> scripts/deploy.sh            (make deploy)
#   TAG=<git sha> scripts/deploy.sh --render   only write .local/deploy.yaml
# 1. renders the production overlay with every function image at TAG
# 2. applies everything but the workloads (namespace, config, policies,
#    Redis, service accounts, Services, Ingress) and the migrate Job, after
#    deleting the previous release's Job (Jobs are immutable)
# 3. waits for the migration to complete (functions refuse to start on an
#    older schema, so nothing new serves before it)
# 4. applies the rest (Deployments roll one surge pod at a time, CronJobs)
#    and waits for every rollout
# The Secret honeydue-secrets must exist (k3s/base/secret.example.env).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OVERLAY=${OVERLAY:-k3s/overlays/production}
TAG=${TAG:-$(git rev-parse --short=12 HEAD)}
case "$TAG" in latest|dev|"") echo "deploy: TAG must be an immutable tag (a git SHA), not '$TAG'" >&2; exit 2 ;; esac
eval "$(scripts/pytools.sh kubectl)"
mkdir -p .local
out=.local/deploy.yaml
kubectl kustomize "$OVERLAY" | sed -E "s#^( *image: .*/[a-z0-9-]+):dev\$#\\1:$TAG#" > "$out"
if grep -nE '^ *image: .*:(dev|latest)$' "$out" >&2; then
  echo "deploy: images above are not pinned to $TAG" >&2
  exit 1
fi
echo "deploy: rendered $OVERLAY at $TAG into $out" >&2
[ "${1:-}" = "--render" ] && exit 0

ns=honeydue
kubectl -n "$ns" get secret honeydue-secrets >/dev/null \
  || { echo "deploy: create the Secret honeydue-secrets first (k3s/base/secret.example.env)" >&2; exit 1; }
kubectl -n "$ns" delete job migrate --ignore-not-found --wait=true
kubectl apply -f "$out" --selector 'honeydue.io/trigger notin (http,schedule)'
kubectl -n "$ns" wait --for=condition=complete job/migrate --timeout=15m \
  || { kubectl -n "$ns" logs job/migrate --tail=50 >&2 || true; echo "deploy: migration failed; nothing rolled" >&2; exit 1; }
kubectl apply -f "$out"
for d in $(kubectl -n "$ns" get deploy -l app.kubernetes.io/component=function -o name); do
  kubectl -n "$ns" rollout status "$d" --timeout=10m
done
echo "deploy: $TAG is live" >&2
