//! hpcsera's API server: the REST API of DESIGN §4 over the [`hpcsera_store::Store`].
//!
//! [`Application`] (in `app`) binds a listener (port 0 in tests) and serves [`router`]. The
//! route table and the handlers live in `routes`, one module per resource; each checks its
//! role through [`extract::Caller`] (or [`extract::AgentCaller`]) and passes the token's
//! project to the store, which scopes every query by it. The settings are [`ServerConfig`]
//! (in `config`). Which error type where: handlers return [`error::ApiError`], the one
//! mapping to HTTP; the store's errors convert into it.
//!
//! Dependencies run one way: `app` → `routes` → `extract`/`state`/`config`/`error`; nothing
//! below `routes` knows a route. No module here writes SQL.

mod api_bounds;
pub mod app;
pub mod audit;
pub mod bundles;
pub mod config;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod metrics;
mod openapi;
pub mod ratelimit;
mod routes;
pub mod serve;
pub mod state;
pub mod tls;
mod ui;
mod web;
pub mod webhooks;
mod zipstream;

pub use app::{router, Application};
pub use config::{code_file_path, ServerConfig};
pub use routes::spec_json;
pub use state::AppState;
