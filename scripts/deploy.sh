#!/usr/bin/env bash
# Deploys a release to the k3s cluster of the current kube context:
#   TAG=<git sha> scripts/deploy.sh            (make deploy)
#   TAG=<git sha> scripts/deploy.sh --render   only write .local/deploy.yaml
# The same path as by hand (k3s/README.md): scripts/release.sh sets every
# image of the production overlay to TAG (here in a copy under .local/, so
# the working tree stays as committed), then one `kubectl apply -k`:
# the release's own migrate-<TAG> Job starts, Deployments roll one surge pod
# at a time (new pods stay not-ready until the schema is current), CronJobs
# take the new image for their next run. Then it waits for the migration
# and every rollout. The Secrets honeydue-secrets and honeydue-origin-tls
# must exist (k3s/base/secret.example.env, k3s/overlays/production/tls.yaml).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TAG=${TAG:-$(git rev-parse --short=12 HEAD)}
eval "$(scripts/pytools.sh kubectl)"
work=.local/release
rm -rf "$work" && mkdir -p "$work"
cp -r k3s "$work/k3s"
scripts/release.sh "$TAG" "$work/k3s/overlays/production"
out=.local/deploy.yaml
kubectl kustomize "$work/k3s/overlays/production" > "$out"
if grep -nE '^ *image: .*:(dev|latest|unreleased)$' "$out" >&2; then
  echo "deploy: images above are not pinned to $TAG" >&2
  exit 1
fi
echo "deploy: rendered the production overlay at $TAG into $out" >&2
[ "${1:-}" = "--render" ] && exit 0

ns=honeydue
for s in honeydue-secrets honeydue-origin-tls; do
  kubectl -n "$ns" get secret "$s" >/dev/null \
    || { echo "deploy: create the Secret $s first (k3s/README.md)" >&2; exit 1; }
done
kubectl apply -k "$work/k3s/overlays/production"
kubectl -n "$ns" wait --for=condition=complete "job/migrate-$TAG" --timeout=15m \
  || { kubectl -n "$ns" logs "job/migrate-$TAG" --tail=50 >&2 || true
       echo "deploy: migration failed; new pods stay not-ready, the old ones keep serving" >&2; exit 1; }
for d in $(kubectl -n "$ns" get deploy -l 'app.kubernetes.io/component in (function, edge)' -o name); do
  kubectl -n "$ns" rollout status "$d" --timeout=10m
done
echo "deploy: $TAG is live" >&2
