//! A fresh, empty database for one test: SQLite in the test's temp dir, or a new PostgreSQL
//! database when `HPCSERA_TEST_DATABASE_URL` names a PostgreSQL server. Shared by the server's
//! API tests, the store's own tests and the browser tests (`crates/hpcsera/tests/ui`), the
//! last two through `#[path]`.
//!
//! PostgreSQL databases are named `hpcsera_t_<run>_<uuid>` when `HPCSERA_TEST_RUN` names the
//! run (`scripts/test.sh` sets it and drops only its own run's databases at the end, so runs on
//! one machine do not remove each other's), else `hpcsera_t_<uuid>`.

use sqlx::Connection;

/// Creates a fresh database and returns its URL.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("HPCSERA_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let run: String = std::env::var("HPCSERA_TEST_RUN")
                .unwrap_or_default()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect();
            let run = if run.is_empty() {
                run
            } else {
                format!("{run}_")
            };
            let name = format!("hpcsera_t_{run}{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::AnyConnection::connect(&base)
                .await
                .expect("connect to the test PostgreSQL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            conn.close().await.ok();
            let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}", dir.join("test.db").display()),
    }
}
