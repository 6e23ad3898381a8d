//! Schema migrations, one list per backend, applied in order at start-up.

use crate::{Backend, Result, Store, StoreError};
use sqlx::Executor;

const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_agent.sql")),
    (3, include_str!("../migrations/sqlite/0003_code.sql")),
    (4, include_str!("../migrations/sqlite/0004_webhooks.sql")),
    (5, include_str!("../migrations/sqlite/0005_retention.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_auth_failures.sql"),
    ),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_agent.sql")),
    (3, include_str!("../migrations/postgres/0003_code.sql")),
    (4, include_str!("../migrations/postgres/0004_webhooks.sql")),
    (5, include_str!("../migrations/postgres/0005_retention.sql")),
    (
        7,
        include_str!("../migrations/postgres/0007_auth_failures.sql"),
    ),
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
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx.tx)
            .await?;
    if let Some(unknown) = applied
        .iter()
        .find(|v| !migrations.iter().any(|(m, _)| m == *v))
    {
        return Err(StoreError::Migration(format!(
            "the database has schema migration {unknown}, which this hpcsera does not know; upgrade hpcsera"
        )));
    }
    // Every migration not applied yet, in order (versions are not assumed to be contiguous,
    // so a migration merged later with a lower number still runs).
    for (version, sql) in migrations.iter().filter(|(v, _)| !applied.contains(v)) {
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
