//! Reads the functions, routes and schedules out of a SAM `template.yaml`.
//!
//! Only what the shim needs: each `AWS::Serverless::Function` with its
//! binary name, timeout, memory size, literal environment (intrinsics such as
//! `!Ref` are left for the deployment's own environment to provide), HTTP
//! routes and schedules, with `Globals.Function` applied.

use std::path::Path;

use serde_norway::Value;

/// One HTTP route of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Upper-case method, or `ANY`.
    pub method: String,
    /// Path template (`/api/tasks/{id}/`, `/files/{proxy+}`), or `$default`.
    pub path: String,
}

/// One schedule of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The event's logical name.
    pub name: String,
    /// `cron(...)` or `rate(...)`.
    pub expression: String,
}

/// A function as the template describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// The binary's name (`Metadata.BuildProperties.Binary`), else the
    /// logical id: what `--function` names.
    pub name: String,
    /// The resource's logical id.
    pub logical_id: String,
    /// `Timeout` in seconds (Lambda's default: 3).
    pub timeout_secs: u64,
    /// `MemorySize` in MB (Lambda's default: 128).
    pub memory_mb: u64,
    /// `Handler` (for `_HANDLER`).
    pub handler: String,
    /// Literal environment variables (globals first, then the function's).
    pub env: Vec<(String, String)>,
    /// Variables set from template parameters (`!Ref`, `!If [..., !Ref]`),
    /// which a deployment provides: `(variable, parameter, always set)`.
    pub env_params: Vec<(String, String, bool)>,
    /// HTTP routes.
    pub routes: Vec<RouteSpec>,
    /// Schedules.
    pub schedules: Vec<ScheduleSpec>,
}

impl FunctionSpec {
    /// A function the template does not know (run with `-- COMMAND`): a
    /// catch-all route and Lambda's defaults.
    pub fn ad_hoc(name: &str) -> Self {
        Self {
            name: name.to_string(),
            logical_id: name.to_string(),
            timeout_secs: 3,
            memory_mb: 128,
            handler: "bootstrap".into(),
            env: Vec::new(),
            env_params: Vec::new(),
            routes: vec![RouteSpec {
                method: "ANY".into(),
                path: "$default".into(),
            }],
            schedules: Vec::new(),
        }
    }

    /// The value of a literal environment variable.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A template parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its name.
    pub name: String,
    /// `NoEcho: true`: a secret.
    pub no_echo: bool,
    /// It has a `Default` (so a deployment may leave it out).
    pub has_default: bool,
}

/// Every function in a template.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// Functions in the order of the template.
    pub functions: Vec<FunctionSpec>,
    /// Parameters in the order of the template.
    pub parameters: Vec<ParamSpec>,
}

fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => &t.value,
        other => other,
    }
}

fn literal(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    untag(v).as_mapping()?.get(key)
}

fn env_vars(props: &Value) -> Vec<(String, String)> {
    let Some(vars) = get(props, "Environment").and_then(|e| get(e, "Variables")) else {
        return Vec::new();
    };
    let Some(map) = untag(vars).as_mapping() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), literal(v)?)))
        .collect()
}

/// The parameters a value refers to: `!Ref P` (always set) or an `!If`
/// whose branches are `!Ref`s (set only when the condition holds).
fn param_refs(v: &Value) -> Option<(Vec<String>, bool)> {
    let Value::Tagged(t) = v else { return None };
    match t.tag.to_string().as_str() {
        "!Ref" => {
            let name = t.value.as_str()?;
            (!name.starts_with("AWS::")).then(|| (vec![name.to_string()], true))
        }
        "!If" => {
            let branches = t.value.as_sequence()?;
            let names: Vec<String> = branches
                .iter()
                .skip(1)
                .filter_map(|b| param_refs(b).map(|(n, _)| n))
                .flatten()
                .collect();
            (!names.is_empty()).then_some((names, false))
        }
        _ => None,
    }
}

fn env_params(props: &Value) -> Vec<(String, String, bool)> {
    let Some(vars) = get(props, "Environment").and_then(|e| get(e, "Variables")) else {
        return Vec::new();
    };
    let Some(map) = untag(vars).as_mapping() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let (Some(k), Some((names, always))) = (k.as_str(), param_refs(v)) else {
            continue;
        };
        for n in names {
            out.push((k.to_string(), n, always));
        }
    }
    out
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
        let globals = get(&doc, "Globals").and_then(|g| get(g, "Function"));
        let g_timeout = globals
            .and_then(|g| get(g, "Timeout"))
            .and_then(|v| v.as_u64());
        let g_memory = globals
            .and_then(|g| get(g, "MemorySize"))
            .and_then(|v| v.as_u64());
        let g_handler = globals.and_then(|g| get(g, "Handler")).and_then(literal);
        let g_env = globals.map(env_vars).unwrap_or_default();
        let g_env_params = globals.map(env_params).unwrap_or_default();
        let parameters = get(&doc, "Parameters")
            .and_then(|p| untag(p).as_mapping())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        Some(ParamSpec {
                            name: k.as_str()?.to_string(),
                            no_echo: get(v, "NoEcho").and_then(Value::as_bool) == Some(true),
                            has_default: get(v, "Default").is_some(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();

        let resources = get(&doc, "Resources")
            .and_then(|r| untag(r).as_mapping())
            .ok_or("no Resources")?;
        let mut functions = Vec::new();
        for (id, res) in resources {
            let Some(id) = id.as_str() else { continue };
            if get(res, "Type").and_then(|t| t.as_str()) != Some("AWS::Serverless::Function") {
                continue;
            }
            let empty = Value::Null;
            let props = get(res, "Properties").unwrap_or(&empty);
            let name = get(res, "Metadata")
                .and_then(|m| get(m, "BuildProperties"))
                .and_then(|b| get(b, "Binary"))
                .and_then(literal)
                .unwrap_or_else(|| id.to_string());
            let mut env = g_env.clone();
            env.extend(env_vars(props));
            let mut env_params_all = g_env_params.clone();
            env_params_all.extend(env_params(props));
            let mut routes = Vec::new();
            let mut schedules = Vec::new();
            if let Some(events) = get(props, "Events").and_then(|e| untag(e).as_mapping()) {
                for (ev_name, ev) in events {
                    let ev_name = ev_name.as_str().unwrap_or_default().to_string();
                    let kind = get(ev, "Type").and_then(|t| t.as_str()).unwrap_or_default();
                    let ep = get(ev, "Properties").unwrap_or(&empty);
                    match kind {
                        "HttpApi" | "Api" => {
                            let path = get(ep, "Path")
                                .and_then(literal)
                                .unwrap_or_else(|| "$default".into());
                            let method = get(ep, "Method")
                                .and_then(literal)
                                .map(|m| m.to_ascii_uppercase())
                                .map(|m| {
                                    if m == "*" || m == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
                                        "ANY".into()
                                    } else {
                                        m
                                    }
                                })
                                .unwrap_or_else(|| "ANY".into());
                            routes.push(RouteSpec { method, path });
                        }
                        "Schedule" | "ScheduleV2" => {
                            let expr = get(ep, "Schedule")
                                .or_else(|| get(ep, "ScheduleExpression"))
                                .and_then(literal)
                                .ok_or_else(|| {
                                    format!("{id}.{ev_name}: schedule without an expression")
                                })?;
                            schedules.push(ScheduleSpec {
                                name: ev_name,
                                expression: expr,
                            });
                        }
                        _ => {}
                    }
                }
            }
            functions.push(FunctionSpec {
                name,
                logical_id: id.to_string(),
                timeout_secs: get(props, "Timeout")
                    .and_then(|v| v.as_u64())
                    .or(g_timeout)
                    .unwrap_or(3),
                memory_mb: get(props, "MemorySize")
                    .and_then(|v| v.as_u64())
                    .or(g_memory)
                    .unwrap_or(128),
                handler: get(props, "Handler")
                    .and_then(literal)
                    .or_else(|| g_handler.clone())
                    .unwrap_or_else(|| "bootstrap".into()),
                env,
                env_params: env_params_all,
                routes,
                schedules,
            });
        }
        Ok(Self {
            functions,
            parameters,
        })
    }

    /// The function named `name` (binary name or logical id).
    pub fn function(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions
            .iter()
            .find(|f| f.name == name || f.logical_id == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 10
    MemorySize: 128
    Handler: bootstrap
    Environment:
      Variables:
        DATABASE_URL: !Ref DatabaseUrl
        AWS_LAMBDA_MAX_CONCURRENCY: "8"
        LEVEL: info
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  ApiTasks:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties: {Binary: api-tasks}
    Properties:
      MemorySize: 256
      Environment:
        Variables: {LEVEL: debug}
      Events:
        Get: {Type: HttpApi, Properties: {Method: get, Path: "/api/tasks/{id}/"}}
        Any: {Type: HttpApi, Properties: {Method: ANY, Path: "/api/files/{proxy+}"}}
  Reminders:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 300
      Events:
        Hourly: {Type: Schedule, Properties: {Schedule: "cron(0 * * * ? *)"}}
"#;

    #[test]
    fn reads_functions_routes_schedules_and_globals() {
        let t = Template::parse(T).unwrap();
        assert_eq!(t.functions.len(), 2);
        let f = t.function("api-tasks").unwrap();
        assert_eq!(f.logical_id, "ApiTasks");
        assert_eq!((f.timeout_secs, f.memory_mb), (10, 256));
        assert_eq!(f.env_var("LEVEL"), Some("debug"));
        assert_eq!(f.env_var("AWS_LAMBDA_MAX_CONCURRENCY"), Some("8"));
        assert_eq!(
            f.env_var("DATABASE_URL"),
            None,
            "intrinsics are left to the deployment"
        );
        assert_eq!(
            f.routes[0],
            RouteSpec {
                method: "GET".into(),
                path: "/api/tasks/{id}/".into()
            }
        );
        let r = t.function("Reminders").unwrap();
        assert_eq!(r.timeout_secs, 300);
        assert_eq!(r.schedules[0].expression, "cron(0 * * * ? *)");
        assert!(r.routes.is_empty());
    }
}
