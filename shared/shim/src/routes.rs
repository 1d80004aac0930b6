//! Route matching as API Gateway HTTP APIs do it: exact segments beat
//! `{param}` segments, which beat a trailing `{proxy+}`; an exact method
//! beats `ANY`; `$default` catches what nothing else does. A path that
//! matches some route but not its method is a 405.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    Greedy(String),
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route<T> {
    /// `METHOD /path` as API Gateway writes it (`$default` for the catch-all).
    pub route_key: String,
    method: String,
    segs: Option<Vec<Seg>>, // None = $default
    /// What the route leads to (a function's index).
    pub target: T,
}

/// The result of matching a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a, T> {
    /// A route matched.
    Found {
        /// The route's target.
        target: &'a T,
        /// Its route key.
        route_key: &'a str,
        /// Values of `{param}` and `{proxy+}` segments.
        params: BTreeMap<String, String>,
    },
    /// The path matched, the method did not; the allowed methods.
    MethodNotAllowed(Vec<String>),
    /// Nothing matched.
    NotFound,
}

fn parse(path: &str) -> Vec<Seg> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                match inner.strip_suffix('+') {
                    Some(name) => Seg::Greedy(name.to_string()),
                    None => Seg::Param(inner.to_string()),
                }
            } else {
                Seg::Lit(s.to_string())
            }
        })
        .collect()
}

/// Specificity, compared lexicographically: per segment 2 = literal,
/// 1 = param, 0 = greedy; longer wins on a tie.
fn rank(segs: &[Seg]) -> Vec<u8> {
    segs.iter()
        .map(|s| match s {
            Seg::Lit(_) => 2,
            Seg::Param(_) => 1,
            Seg::Greedy(_) => 0,
        })
        .collect()
}

fn matches(segs: &[Seg], path: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Greedy(name) => {
                let rest = path.get(i..)?;
                if rest.is_empty() || (rest.len() == 1 && rest[0].is_empty()) {
                    return None;
                }
                params.insert(name.clone(), rest.join("/"));
                return Some(params);
            }
            Seg::Lit(l) => {
                if path.get(i)? != l {
                    return None;
                }
            }
            Seg::Param(name) => {
                let v = path.get(i)?;
                if v.is_empty() {
                    return None;
                }
                params.insert(name.clone(), percent_decode(v));
            }
        }
    }
    (segs.len() == path.len()).then_some(params)
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A set of routes.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    /// Adds a route (`method` upper-case or `ANY`; `path` a template or
    /// `$default`).
    pub fn add(&mut self, method: &str, path: &str, target: T) {
        let method = method.to_ascii_uppercase();
        let (segs, route_key) = if path == "$default" {
            (None, "$default".to_string())
        } else {
            (Some(parse(path)), format!("{method} {path}"))
        };
        self.routes.push(Route {
            route_key,
            method,
            segs,
            target,
        });
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the most specific route for `method` and `path`.
    pub fn find(&self, method: &str, path: &str) -> Match<'_, T> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        type Best<'r, T> = (&'r Route<T>, Vec<u8>, bool, BTreeMap<String, String>);
        let mut best: Option<Best<'_, T>> = None;
        let mut allowed: Vec<String> = Vec::new();
        for r in &self.routes {
            let Some(segs) = &r.segs else { continue };
            let Some(params) = matches(segs, &parts) else {
                continue;
            };
            let method_ok =
                r.method == "ANY" || r.method == method || (method == "HEAD" && r.method == "GET");
            if !method_ok {
                allowed.push(r.method.clone());
                continue;
            }
            let key = rank(segs);
            let exact = r.method != "ANY";
            let better = match &best {
                None => true,
                Some((_, bk, bexact, _)) => key > *bk || (key == *bk && exact && !bexact),
            };
            if better {
                best = Some((r, key, exact, params));
            }
        }
        if let Some((r, _, _, params)) = best {
            return Match::Found {
                target: &r.target,
                route_key: &r.route_key,
                params,
            };
        }
        if let Some(r) = self.routes.iter().find(|r| r.segs.is_none()) {
            return Match::Found {
                target: &r.target,
                route_key: &r.route_key,
                params: BTreeMap::new(),
            };
        }
        if allowed.is_empty() {
            Match::NotFound
        } else {
            allowed.sort();
            allowed.dedup();
            Match::MethodNotAllowed(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        let mut r = Router::default();
        r.add("GET", "/api/tasks/", "list");
        r.add("POST", "/api/tasks/", "create");
        r.add("GET", "/api/tasks/{id}/", "get");
        r.add("GET", "/api/tasks/by-residence/{id}/", "board");
        r.add("ANY", "/api/files/{proxy+}", "files");
        r.add("GET", "/api/files/special", "special");
        r.add("ANY", "/api/any/", "any");
        r.add("DELETE", "/api/any/", "any-delete");
        r
    }

    fn target<'a>(m: Match<'a, &'static str>) -> (&'static str, BTreeMap<String, String>) {
        match m {
            Match::Found { target, params, .. } => (target, params),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exact_beats_param_beats_greedy() {
        let r = router();
        assert_eq!(target(r.find("GET", "/api/tasks/")).0, "list");
        assert_eq!(target(r.find("POST", "/api/tasks/")).0, "create");
        let (t, p) = target(r.find("GET", "/api/tasks/42/"));
        assert_eq!((t, p["id"].as_str()), ("get", "42"));
        assert_eq!(
            target(r.find("GET", "/api/tasks/by-residence/7/")).0,
            "board"
        );
        let (t, p) = target(r.find("PUT", "/api/files/a/b/c.png"));
        assert_eq!((t, p["proxy"].as_str()), ("files", "a/b/c.png"));
        assert_eq!(target(r.find("GET", "/api/files/special")).0, "special");
        assert_eq!(target(r.find("DELETE", "/api/any/")).0, "any-delete");
        assert_eq!(target(r.find("PATCH", "/api/any/")).0, "any");
        assert_eq!(target(r.find("HEAD", "/api/tasks/")).0, "list");
    }

    #[test]
    fn method_not_allowed_and_not_found() {
        let r = router();
        assert_eq!(
            r.find("DELETE", "/api/tasks/"),
            Match::MethodNotAllowed(vec!["GET".into(), "POST".into()])
        );
        assert_eq!(r.find("GET", "/api/nothing/"), Match::NotFound);
        assert_eq!(
            r.find("GET", "/api/tasks"),
            Match::NotFound,
            "trailing slashes are exact"
        );
        assert_eq!(
            r.find("GET", "/api/tasks//"),
            Match::NotFound,
            "empty params do not match"
        );
        assert_eq!(
            r.find("GET", "/api/files/"),
            Match::NotFound,
            "greedy needs a segment"
        );
    }

    #[test]
    fn params_are_decoded_and_default_catches_all() {
        let mut r = router();
        let (_, p) = target(r.find("GET", "/api/tasks/a%20b/"));
        assert_eq!(p["id"], "a b");
        r.add("ANY", "$default", "default");
        assert_eq!(target(r.find("GET", "/elsewhere")).0, "default");
    }
}
