//! Schema migrations, one list per backend, applied in order at start-up.

use crate::{Backend, Result, Store, StoreError};
use sqlx::Executor;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_agent.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_agent.sql")),
];

/// Key of the PostgreSQL advisory lock that keeps replicas from migrating at the same time.
const PG_MIGRATION_LOCK: i64 = 0x0068_7063_7365_7261; // "hpcsera"

pub(crate) async fn run(store: &Store) -> Result<()> {
    let migrations = match store.backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let mut tx = store.begin_write().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.tx
        .execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *tx.tx)
        .await?;
    let applied = applied.unwrap_or(0);
    if let Some(latest) = migrations.last() {
        if applied > latest.0 {
            return Err(StoreError::Migration(format!(
                "the database is at schema version {applied}, newer than this hpcsera ({}); upgrade hpcsera",
                latest.0
            )));
        }
    }
    for (version, sql) in migrations.iter().filter(|(v, _)| *v > applied) {
        sqlx::raw_sql(sql)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| StoreError::Migration(format!("migration {version}: {e}")))?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(crate::now_ms())
            .execute(&mut *tx.tx)
            .await?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().await
}
