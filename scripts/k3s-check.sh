#!/usr/bin/env bash
# Static checks of everything that deploys honeyDue, offline:
#   scripts/k3s-check.sh
# 1. renders every kustomize overlay (kubectl kustomize)
# 2. validates every rendered object against the Kubernetes 1.34 schemas
#    (kubernetes-validate --strict), and the Traefik HelmChartConfig's values
# 3. checks that the rendered objects fit together (labels the network
#    policies select on, Service selectors, Ingress backends, image tags)
# 4. checkov (framework kubernetes) on the rendered manifests
# 5. hadolint on the Dockerfile
# 6. sam validate --lint, cfn-lint and the SAM transform (aws-sam-translator)
#    on template.yaml
# Tools come from PyPI through scripts/pytools.sh. Rendered manifests are
# left in .local/k3s-check/ for a look. Exits non-zero if any check fails.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
eval "$(scripts/pytools.sh sam checkov kubernetes-validate kubectl hadolint)" || exit 1
PY="$ROOT/.local/tools/kubernetes-validate/bin/python" # has PyYAML
OUT="$ROOT/.local/k3s-check"
rm -rf "$OUT" && mkdir -p "$OUT"
# The cluster's version (k3s v1.34); kubernetes-validate carries its schemas.
K8S_VERSION=1.34.0
# K3S_DIR: another copy of the k3s/ tree (a generator test writes one).
K3S=${K3S_DIR:-$ROOT/k3s}
OVERLAYS=(local production)
failed=()

check() { # name command...: runs one check, prints one line for it
  local name=$1; shift
  local log="$OUT/${name// /-}.log" start=$EPOCHREALTIME took
  "$@" >"$log" 2>&1
  local rc=$?
  took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if [ $rc -eq 0 ]; then
    printf 'k3s-check: %-28s ok   (%ss)\n' "$name" "$took"
  else
    printf 'k3s-check: %-28s FAIL (%ss)\n' "$name" "$took"
    sed 's/^/    /' "$log"
    failed+=("$name")
  fi
}

# --- 1. render ---------------------------------------------------------------
for o in "${OVERLAYS[@]}"; do
  check "render $o" kubectl kustomize "$K3S/overlays/$o" -o "$OUT/$o.yaml"
done

# --- 2. schemas ----------------------------------------------------------------
# Kinds without a schema in kubernetes-validate, skipped on purpose: the
# Traefik CRDs (traefik.io) and k3s' HelmChartConfig (helm.cattle.io). Any
# other kind without a schema (a typo in apiVersion or kind) fails.
split_known() { # rendered.yaml out.yaml: drops (and lists) the skipped kinds
  "$PY" - "$1" "$2" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
keep, skipped = [], {}
for d in docs:
    group = d.get("apiVersion", "").split("/")[0]
    if group in ("traefik.io", "helm.cattle.io"):
        key = f'{d["kind"]} ({d["apiVersion"]})'
        skipped[key] = skipped.get(key, 0) + 1
    else:
        keep.append(d)
yaml.safe_dump_all(keep, open(sys.argv[2], "w"), sort_keys=False)
for k, n in sorted(skipped.items()):
    print(f"skipped, no schema: {n} x {k}")
print(f"{len(keep)} objects to validate")
EOF
}
validate() { # rendered.yaml
  local known="${1%.yaml}.known.yaml" out
  split_known "$1" "$known" || return 1
  out=$(kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$known" 2>&1)
  local rc=$?
  printf '%s\n' "$out"
  if grep -q "Couldn't find schema" <<<"$out"; then return 1; fi
  return $rc
}
for o in "${OVERLAYS[@]}"; do
  [ -f "$OUT/$o.yaml" ] && check "schemas $o" validate "$OUT/$o.yaml"
done
check "schemas traefik" "$PY" - "$K3S/traefik/helmchartconfig.yaml" <<'EOF'
# HelmChartConfig has no schema here: check its shape and that valuesContent
# is a YAML mapping that makes Traefik a DaemonSet on hostPorts 80/443 in the
# pod network (the NetworkPolicies select its pods), HTTPS with a redirect.
import sys, yaml
(d,) = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert d["apiVersion"] == "helm.cattle.io/v1" and d["kind"] == "HelmChartConfig", d.get("kind")
assert d["metadata"] == {"name": "traefik", "namespace": "kube-system"}, d["metadata"]
v = yaml.safe_load(d["spec"]["valuesContent"])
assert isinstance(v, dict), "valuesContent is not a mapping"
assert v["deployment"]["kind"] == "DaemonSet" and not v.get("hostNetwork")
assert (v["ports"]["web"]["hostPort"], v["ports"]["websecure"]["hostPort"]) == (80, 443)
assert v["ports"]["web"]["redirections"]["entryPoint"]["to"] == "websecure"
assert v["ports"]["websecure"]["tls"]["enabled"] is True
assert v["providers"]["kubernetesIngress"]["allowEmptyServices"] is True
assert v["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0
print("valuesContent parses; DaemonSet, hostPorts :80/:443, HTTPS redirect")
EOF

# --- 3. consistency ------------------------------------------------------------
consistency() { # rendered.yaml overlay
  "$PY" - "$1" "$2" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
overlay = sys.argv[2]
problems = []
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
def name(d): return f'{d["kind"]}/{d["metadata"]["name"]}'
def pod_template(d):
    spec = d["spec"]
    if d["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]
workloads = [d for k in ("Deployment", "CronJob", "Job") for d in by_kind.get(k, [])]
configmaps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
for d in docs:
    if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "honeydue":
        problems.append(f"{name(d)}: not in namespace honeydue")
for w in workloads:
    t = pod_template(w)
    labels = t["metadata"].get("labels", {})
    comp = labels.get("app.kubernetes.io/component")
    if labels.get("app.kubernetes.io/part-of") != "honeydue":
        problems.append(f"{name(w)}: pods lack app.kubernetes.io/part-of=honeydue")
    if comp not in ("function", "cache", "edge"):
        problems.append(f"{name(w)}: pods' app.kubernetes.io/component is {comp!r}, not function, edge or cache")
    if comp == "function":
        trigger = labels.get("honeydue.io/trigger")
        want = {"Deployment": "http", "CronJob": "schedule", "Job": "job"}[w["kind"]]
        if trigger != want:
            problems.append(f"{name(w)}: pods' honeydue.io/trigger is {trigger!r}, want {want!r}")
        if w["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "function":
            problems.append(f"{name(w)}: the object itself lacks app.kubernetes.io/component=function (overlays select on it)")
    spec = t["spec"]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name(w)}: automountServiceAccountToken is not false")
    for c in spec.get("initContainers", []) + spec["containers"]:
        image = c["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        if not tag or tag == "latest":
            problems.append(f"{name(w)}: image {image} has no explicit tag")
        for ef in c.get("envFrom", []):
            ref = ef.get("configMapRef", {}).get("name")
            if ref and ref not in configmaps:
                problems.append(f"{name(w)}: envFrom ConfigMap {ref} is not rendered")
            sref = ef.get("secretRef", {}).get("name")
            if sref and sref != "honeydue-secrets":
                problems.append(f"{name(w)}: envFrom Secret {sref} is not honeydue-secrets")
        for e in c.get("env", []):
            sk = e.get("valueFrom", {}).get("secretKeyRef")
            if sk and sk["name"] != "honeydue-secrets":
                problems.append(f"{name(w)}: env {e['name']} reads Secret {sk['name']}, not honeydue-secrets")
# Services select pods that exist, on ports those pods declare.
deploy_pods = [pod_template(d) for d in by_kind.get("Deployment", [])]
services = {}
for s in by_kind.get("Service", []):
    sel = s["spec"].get("selector", {})
    match = [t for t in deploy_pods if sel and all(t["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
    if not match:
        problems.append(f"{name(s)}: selector {sel} matches no Deployment's pods")
    names = {p["name"] for t in match for c in t["spec"]["containers"] for p in c.get("ports", []) if "name" in p}
    for p in s["spec"]["ports"]:
        tp = p.get("targetPort", p["port"])
        if isinstance(tp, str) and tp not in names:
            problems.append(f"{name(s)}: targetPort {tp} is no named container port")
    services[s["metadata"]["name"]] = {p.get("name") for p in s["spec"]["ports"]} | {p["port"] for p in s["spec"]["ports"]}
    # The shim's admin port (probes, metrics) is never behind a Service.
    for p in s["spec"]["ports"]:
        if p.get("targetPort") in ("admin", 9090):
            problems.append(f"{name(s)}: exposes the admin port")
# Probes hit the admin port, which every shim pod declares.
for d in by_kind.get("Deployment", []):
    for c in pod_template(d)["spec"]["containers"]:
        if c.get("args", [None])[0] not in ("pod", "errors"):
            continue
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("admin") != 9090 or ports.get("http") != 8080:
            problems.append(f"{name(d)}: ports {ports}, want http 8080 and admin 9090")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("httpGet", {}).get("port") != "admin":
                problems.append(f"{name(d)}: {probe} is not on the admin port")
# The Ingress routes to rendered Services and, in an overlay, has a host.
for ing in by_kind.get("Ingress", []):
    for rule in ing["spec"].get("rules", []):
        if not rule.get("host"):
            problems.append(f"{name(ing)}: a rule has no host in overlay {overlay}")
        for p in rule.get("http", {}).get("paths", []):
            svc = p["backend"]["service"]
            port = svc["port"].get("name", svc["port"].get("number"))
            if svc["name"] not in services:
                problems.append(f"{name(ing)}: path {p['path']} -> unknown Service {svc['name']}")
            elif port not in services[svc["name"]]:
                problems.append(f"{name(ing)}: path {p['path']} -> Service {svc['name']} has no port {port}")
for p in problems:
    print(p)
print(f"{len(docs)} objects, {len(workloads)} workloads, {len(problems)} problems")
sys.exit(1 if problems else 0)
EOF
}
for o in "${OVERLAYS[@]}"; do
  [ -f "$OUT/$o.yaml" ] && check "consistency $o" consistency "$OUT/$o.yaml" "$o"
done

# --- 3b. releases -----------------------------------------------------------------
# Two releases of the production overlay, rendered as `make release` +
# `kubectl apply -k` would apply them: every image at the release's tag (no
# dev/latest/unreleased, none untagged), no Job keeping its name while its
# pod template changes (Jobs are immutable: the second apply would fail),
# and no Deployment that an HPA scales setting replicas (every apply would
# reset it).
releases() {
  local tmp; tmp=$(mktemp -d) || return 1
  for tag in 0123456789ab fedcba987654; do
    mkdir -p "$tmp/$tag" && cp -r "$K3S" "$tmp/$tag/k3s" &&
      scripts/release.sh "$tag" "$tmp/$tag/k3s/overlays/production" &&
      kubectl kustomize "$tmp/$tag/k3s/overlays/production" -o "$tmp/$tag.yaml" || { rm -rf "$tmp"; return 1; }
  done
  "$PY" - "$tmp/0123456789ab.yaml" "$tmp/fedcba987654.yaml" <<'PY'
import json, sys, yaml
problems = []
releases = []
for path, tag in zip(sys.argv[1:], ("0123456789ab", "fedcba987654")):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    releases.append((tag, docs))
    hpa_targets = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if d["kind"] not in ("Deployment", "CronJob", "Job"):
            continue
        n = f'{d["kind"]}/{d["metadata"]["name"]}'
        for c in spec["template"]["spec"]["containers"]:
            image = c["image"]
            repo, _, t = image.rpartition(":")
            if "/" in t or not repo:
                problems.append(f"release {tag}: {n}: image {image} has no tag")
            elif t in ("dev", "latest", "unreleased"):
                problems.append(f"release {tag}: {n}: image {image}")
            elif "/honeydue/" in image and t != tag:
                problems.append(f"release {tag}: {n}: image {image} is not at {tag}")
        if d["kind"] == "Deployment" and d["metadata"]["name"] in hpa_targets and "replicas" in d["spec"]:
            problems.append(f"release {tag}: {n} sets replicas although an HPA owns them")
(ta, a), (tb, b) = releases
jobs_b = {d["metadata"]["name"]: d for d in b if d["kind"] == "Job"}
for d in a:
    if d["kind"] != "Job":
        continue
    other = jobs_b.get(d["metadata"]["name"])
    if other and json.dumps(other["spec"]["template"], sort_keys=True) != json.dumps(d["spec"]["template"], sort_keys=True):
        problems.append(f"Job/{d['metadata']['name']} keeps its name from {ta} to {tb} while its pod template changes")
print("\n".join(problems) or f"releases {ta} and {tb}: every image pinned, Jobs renamed per release, HPA-owned replicas left alone")
sys.exit(1 if problems else 0)
PY
  local rc=$?
  rm -rf "$tmp"
  return $rc
}
check "releases" releases

# --- 4. checkov ----------------------------------------------------------------
# Skipped everywhere, on purpose:
#   CKV_K8S_15 (imagePullPolicy Always): images carry immutable tags (the
#     release's commit for ours, an exact release for Redis); IfNotPresent
#     lets pods restart while the registry is down.
#   CKV_K8S_43 (image by digest): tags are pinned and checked above (no
#     :latest); digests are not known when the manifests are generated.
# Other skips are annotations on the object concerned (checkov.io/skipN).
# --skip-download: offline, no Prisma Cloud lookups.
rendered=()
for o in "${OVERLAYS[@]}"; do [ -f "$OUT/$o.yaml" ] && rendered+=("$OUT/$o.yaml"); done
if [ ${#rendered[@]} -gt 0 ]; then
  check "checkov" checkov --framework kubernetes --skip-download --compact --quiet \
    --skip-check CKV_K8S_15,CKV_K8S_43 -f "${rendered[@]}"
fi

# --- 5. Dockerfile ---------------------------------------------------------------
check "hadolint Dockerfile" hadolint Dockerfile

# --- 6. SAM template ---------------------------------------------------------------
# Neither needs AWS credentials or a region (checked offline).
check "sam validate --lint" env SAM_CLI_TELEMETRY=0 sam validate --lint --template template.yaml
check "cfn-lint template.yaml" cfn-lint template.yaml
# The SAM transform itself, offline, and what the transformed stack holds.
check "sam transform" env AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline \
  "$ROOT/.local/tools/sam/bin/python" scripts/sam_translate.py template.yaml

if [ ${#failed[@]} -gt 0 ]; then
  echo "k3s-check: FAILED: ${failed[*]}"
  exit 1
fi
echo "k3s-check: all checks passed"
