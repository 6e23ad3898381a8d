//! A real server for tests and benches: tokens on a store, and the server on port 0.
//!
//! Shared by the agent's tests (module `test_server`) and, through `#[path]`, by hpcsera's
//! e2e tests and its dispatch bench, which set up the same server; it uses only crates all
//! three have (api-types, store, server, tokio).

use hpcsera_api_types::RoleSet;
use hpcsera_server::{Application, ServerConfig};
use hpcsera_store::{NewToken, Store};

/// A token that never expires for `user` in `project`, called `name`, with `roles`; an
/// agent's token names its `site`. Returns the secret.
pub async fn token(
    store: &Store,
    user: &str,
    project: &str,
    name: &str,
    roles: RoleSet,
    site: Option<&str>,
) -> String {
    let (_, secret) = store
        .create_token(&NewToken {
            user,
            project,
            name,
            roles,
            site,
            expires_at: None,
        })
        .await
        .expect("create a token");
    secret
}

/// Serves `store` with `config` on 127.0.0.1, port 0, until the test ends; returns the base
/// URL (`http://127.0.0.1:PORT`).
pub async fn serve(config: ServerConfig, store: Store) -> String {
    let config = ServerConfig {
        listen: "127.0.0.1:0".into(),
        ..config
    };
    let app = Application::build(config, store)
        .await
        .expect("bind the server");
    let url = format!("http://{}", app.local_addr().expect("the server's address"));
    tokio::spawn(app.run_until(std::future::pending()));
    url
}
