//! Typed configuration from the environment, and the one way a function
//! starts.
//!
//! Every function reads what it needs through an [`Env`] reader, which
//! collects *every* missing or malformed variable and fails once, at cold
//! start, with a message naming them all — never one at a time, never later
//! in a request.
//!
//! Every function's `main` is [`start`] with a value that implements
//! [`Function`]: it reads its whole configuration (the common settings and
//! its own, the S3, SMTP or App Store ones alike) from one [`Env`], builds
//! its state once and serves. `honeydue_http::start` and
//! `honeydue_jobs::start` are this same function, re-exported for the
//! crates that depend on those.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

/// A value that must never be printed (passwords, URLs with credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The wrapped value; call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The error returned when configuration is incomplete: it names every bad
/// variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per variable that is missing or malformed.
    pub problems: Vec<String>,
}

/// Where an [`Env`] reads variables from.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Collects configuration from an environment (the process environment, or a
/// map in tests), remembering every problem until [`Env::finish`].
pub struct Env {
    lookup: Lookup,
    problems: Vec<String>,
}

impl Default for Env {
    fn default() -> Self {
        Self::from_process()
    }
}

impl Env {
    /// Reads from the process environment.
    pub fn from_process() -> Self {
        Self::from_fn(|k| std::env::var(k).ok())
    }

    /// Reads from a list of pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_fn(move |k| map.get(k).cloned())
    }

    fn from_fn(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Box::new(f),
            problems: Vec::new(),
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A variable that must be present and parse as `T`.
    pub fn required<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => {
                self.problems.push(format!("{name} is not set"));
                None
            }
            Some(v) => self.parse(name, &v),
        }
    }

    /// A secret variable that must be present.
    pub fn required_secret(&mut self, name: &str) -> Option<Secret<String>> {
        self.required::<String>(name).map(Secret::new)
    }

    /// A variable that may be absent; present but malformed is an error.
    pub fn optional<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let v = self.raw(name)?;
        self.parse(name, &v)
    }

    /// A variable with a default when absent; present but malformed is an
    /// error.
    pub fn or<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            None => default,
            Some(v) => self.parse(name, &v).unwrap_or(default),
        }
    }

    /// A boolean flag (`true/false/1/0/yes/no/on/off`), default when absent.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.problems
                        .push(format!("{name} must be true or false, got {v:?}"));
                    default
                }
            },
        }
    }

    /// Records a problem found while checking values together.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn parse<T: FromStr>(&mut self, name: &str, v: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        match v.trim().parse::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(format!("{name} is malformed: {e}"));
                None
            }
        }
    }

    /// Ends reading: `Err` names every problem seen.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }

    /// Ends reading with what was read: `Err` names every problem seen.
    ///
    /// Readers return `None` only after recording why; a `None` with no
    /// problem recorded is a reader's bug, reported as such rather than a
    /// panic at cold start.
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        self.finish()?;
        value.ok_or_else(|| ConfigError {
            problems: vec![
                "configuration incomplete (a reader returned nothing without naming a variable)"
                    .to_string(),
            ],
        })
    }
}

/// The error a function's loop ends with; `lambda_runtime::Error` and
/// `lambda_http::Error` are this type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How one function starts, declared once and run by [`start`].
///
/// Starting has three steps, and every function takes the same ones:
///
/// 1. [`read`](Function::read): every variable the function needs, the
///    common ones (database, app settings, Redis) and its own (S3, SMTP,
///    App Store, seeds) alike, from one [`Env`], recording each problem in
///    it. Work that needs no I/O and can fail on a bad value (an SMTP
///    client, a certificate) belongs here too, so that its failure is named
///    with the others.
/// 2. [`build`](Function::build): what needs the complete configuration or
///    I/O (the pool and the schema check, the S3 client). Its error is an
///    init error as well.
/// 3. [`serve`](Function::serve): the runtime loop with the finished state.
///
/// Implemented by `honeydue_http::Api` (database-backed HTTP functions),
/// `honeydue_http::Stateless`, `honeydue_jobs::Job` (scheduled functions)
/// and the functions that have their own loop (`cron-email-dispatch`,
/// `cron-push-dispatch`, `migrate`).
pub trait Function {
    /// Everything read from the environment.
    type Config;
    /// What the loop serves with, built once per process.
    type State;

    /// The function's name, which starts its init-error line.
    fn name(&self) -> &str;

    /// Reads the whole configuration from `env`, recording every problem
    /// there; `None` only when a problem was recorded.
    fn read(&self, env: &mut Env) -> Option<Self::Config>;

    /// Builds the state from a complete configuration.
    fn build(&self, config: Self::Config) -> impl Future<Output = anyhow::Result<Self::State>>;

    /// Serves invocations until the runtime stops.
    fn serve(&self, state: Self::State) -> impl Future<Output = Result<(), BoxError>>;
}

/// Reads `function`'s configuration from `env` and builds its state:
/// [`start`] without tracing, the process environment or the exit (tests).
/// `Err` names every configuration problem at once, or says what building
/// failed on.
pub async fn init<F: Function>(function: &F, mut env: Env) -> anyhow::Result<F::State> {
    let config = function.read(&mut env);
    let config = env.finish_with(config)?;
    function.build(config).await
}

/// The `main` of every function: tracing, then [`init`] from the process
/// environment, then [`Function::serve`].
///
/// A failed init ends the process once, before the runtime loop: one log
/// line and one stderr line (`<name>: <every problem>`), exit code 2, which
/// the shim and Lambda report as an init error.
pub async fn start<F: Function>(function: &F) -> Result<(), BoxError> {
    crate::telemetry::init();
    let state = match init(function, Env::from_process()).await {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(
                function = function.name(),
                error = format!("{e:#}"),
                "init failed"
            );
            eprintln!("{}: {e:#}", function.name());
            std::process::exit(2);
        }
    };
    function.serve(state).await
}

/// The runtime loop of a function whose invocation is one call of `run`
/// with the event: its `Ok` is the invocation's JSON answer, its `Err` (the
/// cause chain) the invocation's error.
pub async fn serve_each<T, F, Fut>(run: F) -> Result<(), BoxError>
where
    T: serde::Serialize,
    F: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let run = &run;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |ev: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let out = run(ev.payload).await.map_err(|e| format!("{e:#}"))?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(out)?)
        },
    ))
    .await
}

/// Database settings shared by every function that uses Postgres.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `DATABASE_URL`: the Postgres connection string.
    pub url: Secret<String>,
    /// `DATABASE_MAX_CONNECTIONS`: pool size per process. Default: the
    /// invocations the process serves at once (`AWS_LAMBDA_MAX_CONCURRENCY`,
    /// 1 when unset, as on ordinary Lambda) plus one for work after the
    /// answer (urgent mail): a connection per invocation in flight, never
    /// more. The pool is lazy and closes idle connections after 5 minutes,
    /// so it opens only what the load uses.
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` (default 5000).
    pub acquire_timeout_ms: u64,
}

impl DbConfig {
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` when unset.
    pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 5000;

    /// Reads `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` (default from
    /// `AWS_LAMBDA_MAX_CONCURRENCY`), `DATABASE_ACQUIRE_TIMEOUT_MS`.
    pub fn read(env: &mut Env) -> Option<Self> {
        let url = env.required_secret("DATABASE_URL");
        let concurrency = env.or("AWS_LAMBDA_MAX_CONCURRENCY", 1u32).max(1);
        let max_connections = env.or("DATABASE_MAX_CONNECTIONS", concurrency.saturating_add(1));
        if max_connections == 0 {
            env.problem("DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        let acquire_timeout_ms = env.or(
            "DATABASE_ACQUIRE_TIMEOUT_MS",
            Self::DEFAULT_ACQUIRE_TIMEOUT_MS,
        );
        if let Some(u) = &url {
            if !(u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://")) {
                env.problem("DATABASE_URL must start with postgres:// or postgresql://");
            }
        }
        Some(Self {
            url: url?,
            max_connections,
            acquire_timeout_ms,
        })
    }
}

/// Settings of the public app that emails and links refer to.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `APP_NAME` (default "honeyDue").
    pub name: String,
    /// `APP_BASE_URL` (default `http://localhost:3000`): links in emails.
    pub base_url: String,
    /// `MAIL_FROM` (default `honeyDue <noreply@honeydue.local>`).
    pub mail_from: String,
    /// `TOKEN_TTL_DAYS` (default 365): lifetime of an app login token.
    pub token_ttl_days: i64,
    /// `APP_SECRET`: signs unsubscribe links and other tokens that travel
    /// outside the database. Required by the functions that sign.
    pub secret: Option<Secret<String>>,
}

impl AppConfig {
    /// Reads the app's public settings; all have defaults.
    pub fn read(env: &mut Env) -> Self {
        let base_url: String = env.or("APP_BASE_URL", "http://localhost:3000".to_string());
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            env.problem("APP_BASE_URL must start with http:// or https://");
        }
        let token_ttl_days = env.or("TOKEN_TTL_DAYS", 365i64);
        if !(1..=3650).contains(&token_ttl_days) {
            env.problem("TOKEN_TTL_DAYS must be between 1 and 3650");
        }
        Self {
            name: env.or("APP_NAME", "honeyDue".to_string()),
            base_url: base_url.trim_end_matches('/').to_string(),
            mail_from: env.or("MAIL_FROM", "honeyDue <noreply@honeydue.local>".to_string()),
            token_ttl_days,
            secret: {
                let s: Option<String> = env.optional("APP_SECRET");
                if s.as_ref().is_some_and(|s| s.len() < 16) {
                    env.problem("APP_SECRET must be at least 16 characters");
                }
                s.map(Secret::new)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_and_malformed_variable() {
        let mut env = Env::from_pairs([("DATABASE_MAX_CONNECTIONS", "many")]);
        let db = DbConfig::read(&mut env);
        let flag = env.flag("FLAG", false);
        let err = env.finish().unwrap_err().to_string();
        assert!(db.is_none());
        assert!(!flag);
        assert!(err.contains("DATABASE_URL is not set"), "{err}");
        assert!(
            err.contains("DATABASE_MAX_CONNECTIONS is malformed"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    /// A function with common settings and its own, read from one `Env`.
    struct Probe;

    impl Function for Probe {
        type Config = (DbConfig, AppConfig, u16);
        type State = u16;

        fn name(&self) -> &str {
            "probe"
        }

        fn read(&self, env: &mut Env) -> Option<Self::Config> {
            let db = DbConfig::read(env);
            let app = AppConfig::read(env);
            let port = env.required("PROBE_PORT");
            Some((db?, app, port?))
        }

        async fn build(&self, (_, _, port): Self::Config) -> anyhow::Result<u16> {
            Ok(port)
        }

        async fn serve(&self, _: u16) -> Result<(), BoxError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn init_names_the_common_and_the_functions_own_problems_at_once() {
        let env = Env::from_pairs([("TOKEN_TTL_DAYS", "forever"), ("PROBE_PORT", "high")]);
        let err = format!("{:#}", init(&Probe, env).await.unwrap_err());
        for name in ["DATABASE_URL", "TOKEN_TTL_DAYS", "PROBE_PORT"] {
            assert!(err.contains(name), "{err}");
        }
        let env = Env::from_pairs([("DATABASE_URL", "postgres://x/y"), ("PROBE_PORT", "8")]);
        assert_eq!(init(&Probe, env).await.unwrap(), 8);
    }

    #[test]
    fn a_reader_that_returns_nothing_without_a_problem_is_still_an_error() {
        let env = Env::from_pairs([("A", "1")]);
        assert!(env.finish_with(None::<()>).is_err());
        let env = Env::from_pairs([("A", "1")]);
        assert_eq!(env.finish_with(Some(3)).unwrap(), 3);
    }

    #[test]
    fn defaults_apply_when_absent() {
        let mut env = Env::from_pairs([("DATABASE_URL", "postgres://x/y")]);
        let db = DbConfig::read(&mut env).unwrap();
        let app = AppConfig::read(&mut env);
        env.finish().unwrap();
        assert_eq!(db.max_connections, 2, "one invocation at a time, plus one");
        assert_eq!(app.token_ttl_days, 365);
    }

    #[test]
    fn the_pool_is_sized_from_the_concurrency_unless_set() {
        let read = |pairs: &[(&str, &str)]| {
            let mut env = Env::from_pairs(pairs.iter().copied());
            let db = DbConfig::read(&mut env);
            env.finish_with(db).map(|d| d.max_connections)
        };
        let url = ("DATABASE_URL", "postgres://x/y");
        assert_eq!(
            read(&[url, ("AWS_LAMBDA_MAX_CONCURRENCY", "8")]).unwrap(),
            9
        );
        assert_eq!(
            read(&[url, ("AWS_LAMBDA_MAX_CONCURRENCY", "0")]).unwrap(),
            2
        );
        assert_eq!(
            read(&[
                url,
                ("AWS_LAMBDA_MAX_CONCURRENCY", "8"),
                ("DATABASE_MAX_CONNECTIONS", "4")
            ])
            .unwrap(),
            4,
            "an explicit size wins"
        );
        assert_eq!(
            read(&[url, ("DATABASE_MAX_CONNECTIONS", "")]).unwrap(),
            2,
            "empty is unset"
        );
        assert!(read(&[url, ("DATABASE_MAX_CONNECTIONS", "0")]).is_err());
    }
}
