//! How an HTTP function declares what it needs, for
//! [`start`](fn@crate::start) (`honeydue_core::config::start`, the one entry
//! point of every function).
//!
//! A database-backed function's `main` is
//! `honeydue_http::start(&Api::new("<name>", <crate>::app)).await`. The
//! argument of its router function says what it needs: [`State`] (the pool,
//! the cache, the common [`Config`]), or a type of its own that implements
//! [`AppState`] (`api-uploads`: the state plus the bucket), or `(State, X)`
//! for a part `X` that implements [`Extra`] (`api-auth`: the urgent mailer;
//! `api-subscriptions`: the App Store settings). Whatever it is, it is read
//! from the same [`Env`] as the common settings, every problem is named at
//! once, and the router gets it finished. A function without a database
//! (health, docs, the web pages) is a [`Stateless`].

use std::future::Future;

use axum::Router;
use honeydue_core::config::{AppConfig, BoxError, Function};
use honeydue_core::Env;

use crate::state::{Config, State};

/// What a database-backed function's router is built with: the common
/// [`State`] plus what the function reads itself.
pub trait AppState: Sized {
    /// What the function reads beyond the common [`Config`] (`()` for
    /// nothing).
    type Settings;

    /// Reads the function's own settings from the `env` the common ones
    /// came from, recording every problem there; `None` only when one was
    /// recorded. `app` holds the app settings already read (the sender
    /// address, the secret).
    fn read(env: &mut Env, app: &AppConfig) -> Option<Self::Settings>;

    /// Builds the router's state from the common state and the settings,
    /// once every variable has been read; its error is an init error.
    fn build(state: State, settings: Self::Settings) -> impl Future<Output = anyhow::Result<Self>>;
}

/// A part of a function's state that needs no I/O to build (an SMTP
/// client, verified store settings): the router gets `(State, X)`.
pub trait Extra: Sized {
    /// Reads and builds the part from `env`, recording every problem there;
    /// `None` only when one was recorded. `app` as in [`AppState::read`].
    fn read(env: &mut Env, app: &AppConfig) -> Option<Self>;
}

impl AppState for State {
    type Settings = ();

    fn read(_: &mut Env, _: &AppConfig) -> Option<()> {
        Some(())
    }

    async fn build(state: State, (): ()) -> anyhow::Result<Self> {
        Ok(state)
    }
}

impl<X: Extra> AppState for (State, X) {
    type Settings = X;

    fn read(env: &mut Env, app: &AppConfig) -> Option<X> {
        X::read(env, app)
    }

    async fn build(state: State, extra: X) -> anyhow::Result<Self> {
        Ok((state, extra))
    }
}

/// A database-backed HTTP function as [`start`](fn@crate::start) runs it: its
/// name, its router function and what the router needs (`S`).
///
/// At cold start it reads `DATABASE_*`, the app settings, `REDIS_URL` and
/// `S`'s own settings from one environment, builds the pool (checking the
/// schema), the cache and `S`, and serves the router with
/// [`run`](crate::run).
pub struct Api<S = State> {
    name: &'static str,
    app_secret: bool,
    app: fn(S) -> Router,
}

impl<S: AppState> Api<S> {
    /// The function `name`, whose router is `app`.
    pub fn new(name: &'static str, app: fn(S) -> Router) -> Self {
        Self {
            name,
            app_secret: false,
            app,
        }
    }

    /// Makes `APP_SECRET` required (a function that signs unsubscribe
    /// links): its absence is named at cold start with the other problems.
    pub fn requiring_app_secret(self) -> Self {
        Self {
            app_secret: true,
            ..self
        }
    }
}

impl<S: AppState> Function for Api<S> {
    type Config = (Config, S::Settings);
    type State = Router;

    fn name(&self) -> &str {
        self.name
    }

    fn read(&self, env: &mut Env) -> Option<Self::Config> {
        Config::read_with(env, |env, app| {
            if self.app_secret && app.secret.is_none() {
                env.problem("APP_SECRET is required (it signs unsubscribe links)");
            }
            S::read(env, app)
        })
    }

    async fn build(&self, (cfg, settings): Self::Config) -> anyhow::Result<Router> {
        let state = S::build(State::open(cfg).await?, settings).await?;
        Ok((self.app)(state))
    }

    async fn serve(&self, router: Router) -> Result<(), BoxError> {
        crate::run(router).await
    }
}

/// An HTTP function without a database or settings (health, the API
/// description, the web pages): it reads nothing and serves `app()`.
pub struct Stateless {
    name: &'static str,
    app: fn() -> Router,
}

impl Stateless {
    /// The function `name`, whose router is `app()`.
    pub fn new(name: &'static str, app: fn() -> Router) -> Self {
        Self { name, app }
    }
}

impl Function for Stateless {
    type Config = ();
    type State = Router;

    fn name(&self) -> &str {
        self.name
    }

    fn read(&self, _: &mut Env) -> Option<()> {
        Some(())
    }

    async fn build(&self, (): ()) -> anyhow::Result<Router> {
        Ok((self.app)())
    }

    async fn serve(&self, router: Router) -> Result<(), BoxError> {
        crate::run(router).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part of the state with a variable of its own.
    struct Port;

    impl Extra for Port {
        fn read(env: &mut Env, _: &AppConfig) -> Option<Self> {
            env.required::<u16>("PORT").map(|_| Port)
        }
    }

    fn plain(_: State) -> Router {
        Router::new()
    }

    fn with_port(_: (State, Port)) -> Router {
        Router::new()
    }

    /// What reading `function`'s configuration from `pairs` finds wrong.
    fn problems<F: Function>(function: &F, pairs: &[(&str, &str)]) -> String {
        let mut env = Env::from_pairs(pairs.iter().copied());
        let read = function.read(&mut env);
        match env.finish_with(read) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_functions_own_settings_are_named_with_the_common_ones() {
        let err = problems(&Api::new("t", with_port), &[("PORT", "high")]);
        assert!(err.contains("DATABASE_URL is not set"), "{err}");
        assert!(err.contains("PORT is malformed"), "{err}");

        let db = ("DATABASE_URL", "postgres://x/y");
        assert_eq!(
            problems(&Api::new("t", with_port), &[db, ("PORT", "8")]),
            ""
        );
        assert_eq!(problems(&Api::new("t", plain), &[db]), "");
        let err = problems(&Api::new("t", plain).requiring_app_secret(), &[db]);
        assert!(err.contains("APP_SECRET"), "{err}");
        assert_eq!(problems(&Stateless::new("t", Router::new), &[]), "");
    }
}
