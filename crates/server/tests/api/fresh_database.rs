//! A fresh, empty database for one test: SQLite in the test's temp dir, or a new PostgreSQL
//! database when `HPCSERA_TEST_DATABASE_URL` names a PostgreSQL server. Shared by the server's
//! API tests and the browser tests (`crates/hpcsera/tests/ui`, through `#[path]`).

use sqlx::Connection;

/// Creates a fresh database and returns its URL.
pub async fn fresh_database(dir: &std::path::Path) -> String {
    match std::env::var("HPCSERA_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            sqlx::any::install_default_drivers();
            let name = format!("hpcsera_t_{}", uuid::Uuid::new_v4().simple());
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
