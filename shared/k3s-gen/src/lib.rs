//! `k3s-gen`: the Kubernetes manifests derived from `template.yaml`, so
//! routes, schedules, timeouts and memory cannot drift from what SAM
//! deploys. Writes `k3s/base/generated/` (one file per function and a
//! kustomization); `--check` compares instead of writing (a test and
//! `make test` run it).
//!
//! What each function becomes (k3s/README.md has the why):
//!
//! * HTTP routes: a ServiceAccount (no token), a Deployment running
//!   `shim pod` (probes on the shim's endpoints, restricted security
//!   context, `/tmp` as a sized emptyDir, memory limit from `MemorySize`,
//!   spread over nodes, rolling with no unavailability), a Service, a
//!   PodDisruptionBudget and an HPA (the `hpa` component), and its path
//!   prefixes in the one Ingress;
//! * schedules: a CronJob per schedule running `shim invoke --scheduled`
//!   (Forbid, UTC, starting deadline, bounded history and retries);
//! * neither (migrate): a Job, applied and awaited before the rollout.
//!
//! Environment: variables whose value is in the ConfigMap come from it
//! (`envFrom`); parameters marked `NoEcho`, or set only under a condition,
//! become one `secretKeyRef` each (optional when the parameter has a default
//! or the condition may not hold); anything else is an error, so a new
//! setting cannot be forgotten on k3s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};

use sam_template::{FunctionSpec, Template};

/// The port `shim pod` serves the function's routes on (its `--listen`
/// default): the only port the Service exposes.
pub const POD_PORT: u16 = 8080;
/// The port of the shim's admin listener (`--admin-listen` default): probes
/// and metrics, reached by the kubelet and Prometheus, never by Traefik.
pub const ADMIN_PORT: u16 = 9090;
/// The readiness probe: every `READY_PERIOD_S` seconds, not ready after
/// `READY_FAILURES` failures in a row.
pub const READY_PERIOD_S: u64 = 2;
/// See [`READY_PERIOD_S`].
pub const READY_FAILURES: u64 = 2;
/// How long Traefik's Kubernetes providers may sit on a change before they
/// apply it (its `providersThrottleDuration`, 2 s by default).
pub const PROXY_PROVIDER_DELAY_S: u64 = 2;
/// Time for the watch to carry an EndpointSlice change to the proxy.
pub const DRAIN_MARGIN_S: u64 = 2;
/// Seconds a pod keeps serving after SIGTERM (`SHIM_DRAIN_DELAY`): its
/// endpoint may leave only through failed readiness probes (a node drain,
/// a slow watch), so the delay outlasts the probes' period × failure
/// threshold, plus the proxy's provider delay and a margin. Then no request
/// is sent to a pod that stopped taking them.
pub const DRAIN_DELAY_S: u64 =
    READY_PERIOD_S * READY_FAILURES + PROXY_PROVIDER_DELAY_S + DRAIN_MARGIN_S;
/// The shim's SIGTERM-to-SIGKILL grace for its workers (`--kill-grace`).
pub const KILL_GRACE_S: u64 = 2;
/// The shim's probe paths.
pub const LIVE_PATH: &str = "/_shim/live";
/// Readiness: every worker initialised and not draining.
pub const READY_PATH: &str = "/_shim/ready";
/// Where the image keeps the function binaries and the template.
pub const TASK_DIR: &str = "/var/task";
/// Memory a pod requests: the measured shim (4.6 MiB RSS) plus a function
/// process (13.7 MiB peak for a cron function scanning 100k users, 57 MiB
/// for the digest; BENCHMARKS.md), rounded up for a busy API worker.
pub const MEMORY_REQUEST_MIB: u64 = 48;
/// Memory the shim itself may use on top of the function's `MemorySize`.
pub const SHIM_MEMORY_MIB: u64 = 32;
/// Size of `/tmp` (Lambda gives 512 MB; our functions write nothing there).
pub const TMP_SIZE: &str = "64Mi";

/// The product's names, from a small settings file (`k3s/generator.yaml`):
/// what the generator would otherwise have to know about the product.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// `app.kubernetes.io/part-of` of every object, and the Ingress' name.
    pub part_of: String,
    /// The namespace of objects a component adds (HPAs).
    pub namespace: String,
    /// Prefix of the product's own labels (`<prefix>/trigger`,
    /// `<prefix>/egress-s3`, `<prefix>/egress-smtp`, `<prefix>/egress-push`).
    pub label_prefix: String,
    /// The ConfigMap every function reads (`envFrom`).
    pub config_map: String,
    /// The Secret holding the `NoEcho` parameters' values.
    pub secret: String,
    /// The image of a function; `{function}` is replaced by its name.
    pub image: String,
}

impl Settings {
    /// Reads the settings file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn label(&self, name: &str) -> String {
        format!("{}/{name}", self.label_prefix)
    }
}

/// Inputs besides the template.
pub struct Inputs {
    /// Keys of the ConfigMap (`k3s/base/configmap.yaml`).
    pub config_keys: BTreeSet<String>,
    /// The product's names.
    pub settings: Settings,
}

impl Inputs {
    /// Reads the ConfigMap's keys and the settings.
    pub fn load(configmap: &Path, settings: &Path) -> Result<Self, String> {
        let settings = Settings::load(settings)?;
        let text = std::fs::read_to_string(configmap)
            .map_err(|e| format!("reading {}: {e}", configmap.display()))?;
        let doc: Value =
            serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", configmap.display()))?;
        let keys = doc["data"]
            .as_object()
            .ok_or_else(|| format!("{}: no data", configmap.display()))?
            .keys()
            .cloned()
            .collect();
        Ok(Self {
            config_keys: keys,
            settings,
        })
    }
}

fn labels(s: &Settings, f: &FunctionSpec, trigger: Option<&str>) -> Value {
    let mut l = json!({
        "app.kubernetes.io/name": f.name,
        "app.kubernetes.io/part-of": s.part_of,
        "app.kubernetes.io/component": "function",
    });
    if let Some(t) = trigger {
        l[s.label("trigger")] = json!(t);
        if f.env.iter().any(|(k, _)| k == "S3_BUCKET")
            || f.env_params.iter().any(|(k, _, _)| k == "S3_BUCKET")
        {
            l[s.label("egress-s3")] = json!("true");
        }
        if f.env_params.iter().any(|(k, _, _)| k == "SMTP_HOST") {
            l[s.label("egress-smtp")] = json!("true");
        }
        if f.env_params
            .iter()
            .any(|(k, _, _)| k == "APNS_KEY_ID" || k == "FCM_SERVICE_ACCOUNT")
        {
            l[s.label("egress-push")] = json!("true");
        }
    }
    l
}

fn selector(s: &Settings, f: &FunctionSpec) -> Value {
    json!({"app.kubernetes.io/name": f.name, "app.kubernetes.io/part-of": s.part_of})
}

/// The container environment of `f`.
fn env(t: &Template, f: &FunctionSpec, inputs: &Inputs) -> Result<Vec<Value>, String> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in &f.env {
        if !inputs.config_keys.contains(k) {
            out.insert(k.clone(), json!({"name": k, "value": v}));
        }
    }
    for (var, param, always) in &f.env_params {
        if inputs.config_keys.contains(var) {
            continue;
        }
        let p = t
            .parameters
            .iter()
            .find(|p| &p.name == param)
            .ok_or_else(|| format!("{}: {var} refers to unknown parameter {param}", f.name))?;
        // A plain parameter belongs in the ConfigMap; one set only under a
        // condition (`!If`, the admin seed) is an optional Secret key.
        if !p.no_echo && *always {
            return Err(format!(
                "{}: {var} (parameter {param}) is not in the ConfigMap {}; add it there",
                f.name, inputs.settings.config_map
            ));
        }
        let optional = p.has_default || !always;
        out.insert(
            var.clone(),
            json!({"name": var, "valueFrom": {"secretKeyRef": {"name": inputs.settings.secret, "key": var, "optional": optional}}}),
        );
    }
    // On k3s no IAM role supplies S3 credentials: the Secret does.
    if f.env_params.iter().any(|(k, _, _)| k == "S3_BUCKET") {
        for k in ["S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
            out.insert(
                k.into(),
                json!({"name": k, "valueFrom": {"secretKeyRef": {"name": inputs.settings.secret, "key": k, "optional": false}}}),
            );
        }
    }
    Ok(out.into_values().collect())
}

fn container(
    f: &FunctionSpec,
    t: &Template,
    inputs: &Inputs,
    args: Vec<&str>,
) -> Result<Value, String> {
    Ok(json!({
        "name": "function",
        "image": inputs.settings.image.replace("{function}", &f.name),
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "envFrom": [{"configMapRef": {"name": inputs.settings.config_map}}],
        "env": env(t, f, inputs)?,
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "25m", "memory": format!("{MEMORY_REQUEST_MIB}Mi")},
            "limits": {"memory": format!("{}Mi", f.memory_mb + SHIM_MEMORY_MIB)},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }))
}

fn pod_spec(f: &FunctionSpec, container: Value, restart: Option<&str>, grace: u64) -> Value {
    let mut spec = json!({
        "serviceAccountName": f.name,
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": grace,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}}],
    });
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    spec
}

fn annotations() -> Value {
    json!({
        "checkov.io/skip1": "CKV_K8S_35=the Lambda contract is environment variables; each secret is one secretKeyRef, never a whole Secret",
        "checkov.io/skip2": "CKV_K8S_11=no CPU limit on purpose: CFS throttling would add latency to requests; requests reserve CPU and the HPA scales out",
    })
}

fn service_account(s: &Settings, f: &FunctionSpec) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": f.name, "labels": labels(s, f, None)},
        "automountServiceAccountToken": false,
    })
}

fn http_docs(t: &Template, f: &FunctionSpec, inputs: &Inputs) -> Result<Vec<Value>, String> {
    let mut c = container(f, t, inputs, vec!["pod", "--function", &f.name])?;
    c["ports"] = json!([
        {"name": "http", "containerPort": POD_PORT, "protocol": "TCP"},
        {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
    ]);
    c["env"]
        .as_array_mut()
        .expect("env")
        .push(json!({"name": "SHIM_DRAIN_DELAY", "value": DRAIN_DELAY_S.to_string()}));
    let probe = |path: &str, period: u64, failures: u64| json!({"httpGet": {"path": path, "port": "admin"}, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 2});
    // Startup: the shim answers at all (it is up in milliseconds; workers
    // may take longer and are readiness' business). Readiness: workers
    // initialised, not draining (a function whose schema is behind stays
    // out of the Service instead of being restarted). Liveness: the shim's
    // own loop. All on the admin port, which no Service exposes.
    c["startupProbe"] = probe(LIVE_PATH, 1, 30);
    c["readinessProbe"] = probe(READY_PATH, READY_PERIOD_S, READY_FAILURES);
    c["livenessProbe"] = probe(LIVE_PATH, 10, 3);
    // SIGTERM: readiness fails at once, the shim serves for the drain
    // delay, then waits for in-flight requests (at most the timeout) and
    // stops its workers (kill grace); a few seconds spare.
    let grace = DRAIN_DELAY_S + f.timeout_secs + KILL_GRACE_S + 3;
    let mut pod = pod_spec(f, c, None, grace);
    pod["topologySpreadConstraints"] = json!([{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector(&inputs.settings, f)},
    }]);
    let l = labels(&inputs.settings, f, Some("http"));
    Ok(vec![
        service_account(&inputs.settings, f),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f.name, "labels": l, "annotations": annotations()},
            // No `replicas`: one pod until an HPA (production) owns the
            // count; a value here would reset it on every apply.
            "spec": {
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": selector(&inputs.settings, f)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {"metadata": {"labels": l}, "spec": pod},
            },
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f.name, "labels": labels(&inputs.settings, f, None)},
            "spec": {
                "selector": selector(&inputs.settings, f),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        }),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": f.name, "labels": labels(&inputs.settings, f, None)},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(&inputs.settings, f)}},
        }),
    ])
}

/// An HPA per HTTP function (the optional `hpa` component).
fn hpa(s: &Settings, f: &FunctionSpec) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        // A component is applied after the base's namespace transform.
        "metadata": {"name": f.name, "namespace": s.namespace, "labels": labels(s, f, None)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f.name},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    })
}

/// A Kubernetes schedule for an EventBridge expression (UTC).
pub fn cron_of(expr: &str) -> Result<String, String> {
    let bad = || format!("unsupported schedule {expr:?}");
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
        let (n, unit) = inner.trim().split_once(' ').ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        return Ok(match unit.trim_end_matches('s') {
            "minute" => format!("*/{n} * * * *"),
            "hour" if n == 1 => "0 * * * *".into(),
            "hour" => format!("0 */{n} * * *"),
            "day" if n == 1 => "0 0 * * *".into(),
            "day" => format!("0 0 */{n} * *"),
            _ => return Err(bad()),
        });
    }
    let inner = expr
        .strip_prefix("cron(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(bad)?;
    let f: Vec<&str> = inner.split_whitespace().collect();
    let [min, hour, dom, month, dow, year] = f[..] else {
        return Err(bad());
    };
    if year != "*" {
        return Err(format!(
            "{expr}: a year field cannot be expressed on Kubernetes"
        ));
    }
    let q = |s: &str| {
        if s == "?" {
            "*".to_string()
        } else {
            s.to_string()
        }
    };
    // EventBridge numbers weekdays 1-7 from Sunday, cron 0-6.
    let dow = if dow
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ',' | '-'))
        && dow != "?"
    {
        dow.split(',')
            .map(|part| {
                part.split('-')
                    .map(|d| {
                        d.parse::<u8>()
                            .ok()
                            .filter(|d| (1..=7).contains(d))
                            .map(|d| (d - 1).to_string())
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join("-"))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?
            .join(",")
    } else {
        q(dow)
    };
    Ok(format!(
        "{} {} {} {} {}",
        q(min),
        q(hour),
        q(dom),
        q(month),
        dow
    ))
}

fn cron_docs(t: &Template, f: &FunctionSpec, inputs: &Inputs) -> Result<Vec<Value>, String> {
    let mut docs = vec![service_account(&inputs.settings, f)];
    for s in &f.schedules {
        let schedule = cron_of(&s.expression)?;
        let every_minute = schedule.starts_with("*/1 ") || schedule == "* * * * *";
        let c = container(
            f,
            t,
            inputs,
            vec!["invoke", "--function", &f.name, "--scheduled"],
        )?;
        let l = labels(&inputs.settings, f, Some("schedule"));
        let name = if f.schedules.len() == 1 {
            f.name.clone()
        } else {
            format!("{}-{}", f.name, s.name.to_ascii_lowercase())
        };
        docs.push(json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "labels": l, "annotations": annotations()},
            "spec": {
                "schedule": schedule,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                // A run that could not start in time is dropped; the next
                // one catches up (the jobs serve missed hours).
                "startingDeadlineSeconds": if every_minute { 50 } else { 600 },
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {
                    "metadata": {"labels": l},
                    "spec": {
                        "backoffLimit": if every_minute { 0 } else { 2 },
                        "activeDeadlineSeconds": f.timeout_secs + 60,
                        "ttlSecondsAfterFinished": 3600,
                        "template": {
                            "metadata": {"labels": l},
                            "spec": pod_spec(f, c, Some("Never"), 10),
                        },
                    },
                },
            },
        }));
    }
    Ok(docs)
}

fn job_docs(t: &Template, f: &FunctionSpec, inputs: &Inputs) -> Result<Vec<Value>, String> {
    let c = container(
        f,
        t,
        inputs,
        vec!["invoke", "--function", &f.name, "--scheduled"],
    )?;
    let l = labels(&inputs.settings, f, Some("job"));
    Ok(vec![
        service_account(&inputs.settings, f),
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f.name, "labels": l, "annotations": annotations()},
            "spec": {
                "backoffLimit": 2,
                "activeDeadlineSeconds": f.timeout_secs + 60,
                "template": {"metadata": {"labels": l}, "spec": pod_spec(f, c, Some("Never"), 10)},
            },
        }),
    ])
}

/// The static part of a route path: up to the last `/` before a parameter.
fn static_prefix(path: &str) -> &str {
    match path.find('{') {
        Some(i) => &path[..=path[..i].rfind('/').unwrap_or(0)],
        None => path,
    }
}

/// The first two segments (`/api/tasks/`), or the path if shorter.
fn family(path: &str) -> &str {
    let mut slashes = 0;
    for (i, c) in path.char_indices() {
        if c == '/' {
            slashes += 1;
            if slashes == 3 {
                return &path[..=i];
            }
        }
    }
    path
}

/// Ingress path prefixes → function. A function gets the two-segment
/// families of its routes (`/api/tasks/`); a family that two functions
/// share falls back to each route's own static prefix. Checked: every
/// route's longest matching prefix is its own function's.
pub fn ingress_paths(t: &Template) -> Result<BTreeMap<String, String>, String> {
    let http: Vec<&FunctionSpec> = t
        .functions
        .iter()
        .filter(|f| !f.routes.is_empty())
        .collect();
    let mut owners: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in &http {
        for r in &f.routes {
            if r.path == "$default" {
                return Err(format!(
                    "{}: a $default route has no path for the Ingress",
                    f.name
                ));
            }
            owners
                .entry(family(static_prefix(&r.path)))
                .or_default()
                .insert(&f.name);
        }
    }
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for f in &http {
        for r in &f.routes {
            let fam = family(static_prefix(&r.path));
            let p = if owners[fam].len() == 1 {
                fam
            } else {
                static_prefix(&r.path)
            };
            if let Some(other) = paths.insert(p.to_string(), f.name.clone()) {
                if other != f.name {
                    return Err(format!(
                        "{p} is a prefix of routes of both {other} and {}",
                        f.name
                    ));
                }
            }
        }
    }
    for f in &http {
        for r in &f.routes {
            let concrete = r.path.replace("{proxy+}", "x/y").replace(['{', '}'], "");
            let winner = paths
                .iter()
                .filter(|(p, _)| concrete.starts_with(p.as_str()))
                .max_by_key(|(p, _)| p.len())
                .map(|(_, n)| n.as_str());
            if winner != Some(f.name.as_str()) {
                return Err(format!(
                    "{} {} would reach {winner:?} through the Ingress",
                    r.method, r.path
                ));
            }
        }
    }
    Ok(paths)
}

fn ingress(s: &Settings, t: &Template) -> Result<Value, String> {
    let paths: Vec<Value> = ingress_paths(t)?
        .into_iter()
        .map(|(p, f)| {
            json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": f, "port": {"name": "http"}}}})
        })
        .collect();
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": s.part_of, "labels": {"app.kubernetes.io/part-of": s.part_of}},
        "spec": {"ingressClassName": "traefik", "rules": [{"http": {"paths": paths}}]},
    }))
}

fn yaml_docs(docs: &[Value]) -> String {
    let mut out = String::from(
        "# Generated by k3s-gen from template.yaml and k3s/generator.yaml: do not edit (make k3s).\n",
    );
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(d).expect("YAML"));
    }
    out
}

/// Every generated file: `(path under k3s/, contents)`.
pub fn render(t: &Template, inputs: &Inputs) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    let mut resources = Vec::new();
    let mut hpas = Vec::new();
    for f in &t.functions {
        let docs = if !f.routes.is_empty() {
            hpas.push(hpa(&inputs.settings, f));
            http_docs(t, f, inputs)?
        } else if !f.schedules.is_empty() {
            cron_docs(t, f, inputs)?
        } else {
            job_docs(t, f, inputs)?
        };
        let file = format!("{}.yaml", f.name);
        files.push((format!("base/generated/{file}"), yaml_docs(&docs)));
        resources.push(file);
    }
    files.push((
        "base/generated/ingress.yaml".into(),
        yaml_docs(&[ingress(&inputs.settings, t)?]),
    ));
    resources.push("ingress.yaml".into());
    let k = json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources});
    files.push(("base/generated/kustomization.yaml".into(), yaml_docs(&[k])));
    files.push(("components/hpa/hpa.yaml".into(), yaml_docs(&hpas)));
    let k = json!({"apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component", "resources": ["hpa.yaml"]});
    files.push(("components/hpa/kustomization.yaml".into(), yaml_docs(&[k])));
    Ok(files)
}

/// Writes (or with `check`, compares) the files under `root` (`k3s/`).
/// Returns the paths that differ.
pub fn sync(root: &Path, files: &[(String, String)], check: bool) -> Result<Vec<String>, String> {
    let mut stale = Vec::new();
    for (rel, text) in files {
        let path = root.join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        stale.push(rel.clone());
        if !check {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if let Ok(dir) = std::fs::read_dir(root.join("base/generated")) {
        for entry in dir.flatten() {
            let rel = format!("base/generated/{}", entry.file_name().to_string_lossy());
            if !files.iter().any(|(r, _)| *r == rel) {
                stale.push(rel);
                if !check {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_translate() {
        assert_eq!(cron_of("cron(0 * * * ? *)").unwrap(), "0 * * * *");
        assert_eq!(cron_of("cron(30 4 * * ? *)").unwrap(), "30 4 * * *");
        assert_eq!(cron_of("cron(0 9 ? * 2-6 *)").unwrap(), "0 9 * * 1-5");
        assert_eq!(cron_of("cron(0 9 ? * 1,7 *)").unwrap(), "0 9 * * 0,6");
        assert_eq!(cron_of("rate(1 minute)").unwrap(), "*/1 * * * *");
        assert_eq!(cron_of("rate(5 minutes)").unwrap(), "*/5 * * * *");
        assert_eq!(cron_of("rate(1 hour)").unwrap(), "0 * * * *");
        assert_eq!(cron_of("rate(2 hours)").unwrap(), "0 */2 * * *");
        assert!(cron_of("cron(0 9 * * ? 2027)").is_err());
        assert!(cron_of("rate(0 minutes)").is_err());
        assert!(cron_of("every day").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(static_prefix("/api/tasks/{id}/"), "/api/tasks/");
        assert_eq!(static_prefix("/api/auth/login/"), "/api/auth/login/");
        assert_eq!(family("/api/auth/login/"), "/api/auth/");
        assert_eq!(family("/"), "/");
    }

    const T: &str = r#"
Parameters:
  DatabaseUrl: {Type: String, NoEcho: true}
  Plain: {Type: String, Default: x}
Globals:
  Function:
    Environment:
      Variables:
        DATABASE_URL: !Ref DatabaseUrl
Resources:
  A:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: a}}
    Properties:
      Events:
        One: {Type: HttpApi, Properties: {Method: GET, Path: /api/shared/a/}}
        Two: {Type: HttpApi, Properties: {Method: GET, Path: "/api/own/{id}/"}}
  B:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: b}}
    Properties:
      Environment:
        Variables:
          PLAIN: !Ref Plain
      Events:
        One: {Type: HttpApi, Properties: {Method: GET, Path: /api/shared/b/}}
"#;

    #[test]
    fn shared_families_split_and_config_must_cover_plain_parameters() {
        let t = Template::parse(T).unwrap();
        let paths = ingress_paths(&t).unwrap();
        assert_eq!(
            paths.into_iter().collect::<Vec<_>>(),
            [
                ("/api/own/".to_string(), "a".to_string()),
                ("/api/shared/a/".to_string(), "a".to_string()),
                ("/api/shared/b/".to_string(), "b".to_string()),
            ]
        );
        let mut inputs = Inputs {
            config_keys: BTreeSet::new(),
            settings: Settings {
                part_of: "acme".into(),
                namespace: "acme".into(),
                label_prefix: "acme.example".into(),
                config_map: "acme-config".into(),
                secret: "acme-secrets".into(),
                image: "acme/{function}:dev".into(),
            },
        };
        let err = render(&t, &inputs).unwrap_err();
        assert!(
            err.contains("PLAIN (parameter Plain) is not in the ConfigMap"),
            "{err}"
        );
        inputs.config_keys.insert("PLAIN".into());
        let files = render(&t, &inputs).unwrap();
        let a = &files
            .iter()
            .find(|(p, _)| p == "base/generated/a.yaml")
            .unwrap()
            .1;
        assert!(a.contains("secretKeyRef"), "{a}");
        assert!(a.contains("name: acme-secrets"), "{a}");
        assert!(a.contains("image: acme/a:dev"), "{a}");
        assert!(a.contains("app.kubernetes.io/part-of: acme"), "{a}");
        assert!(a.contains("key: DATABASE_URL"));
        assert!(a.contains("optional: false"));
    }
}
