//! Schema migrations: one list per backend, embedded in the binary and applied at start-up by
//! sqlx's `Migrator`, which records each in `_sqlx_migrations` with a checksum (an applied
//! migration whose file changed afterwards is refused), runs every migration not applied yet
//! in version order (so one merged later with a lower number still runs), refuses a database
//! that has a migration this binary does not know, and on PostgreSQL holds an advisory lock so
//! that replicas starting together migrate once.
//!
//! Databases made before sqlx's migrator was used kept their versions in `schema_migrations`;
//! [`adopt_legacy`] moves those rows into `_sqlx_migrations` once, with the checksums of the
//! embedded files.

use crate::{Backend, Result, Store, StoreError};
use sqlx::migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// One migration: version, description (its file name), SQL.
type Embedded = (i64, &'static str, &'static str);

/// The migrations of both backends' directories, by version and file name: each file exists
/// once per backend (`migrations/sqlite/NAME.sql`, `migrations/postgres/NAME.sql`).
macro_rules! embed {
    ($($version:literal $name:literal),* $(,)?) => {
        (
            &[$(($version, $name, include_str!(concat!("../migrations/sqlite/", $name, ".sql")))),*],
            &[$(($version, $name, include_str!(concat!("../migrations/postgres/", $name, ".sql")))),*],
        )
    };
}

/// `(SQLite, PostgreSQL)`. One migration a line, so that branches adding migrations merge line
/// by line.
const MIGRATIONS: (&[Embedded], &[Embedded]) = embed!(
    1 "0001_init",
    2 "0002_agent",
    3 "0003_code",
    4 "0004_webhooks",
    5 "0005_retention",
    6 "0006_site_projects",
    7 "0007_auth_failures",
    8 "0008_sessions",
    9 "0009_membership_roles",
    10 "0010_signed_approvals",
    11 "0011_resources",
    12 "0012_provenance",
    13 "0013_device_grants",
    14 "0014_sweeps",
    15 "0015_admin_pages",
    18 "0018_auth_generation",
);

/// Key of the PostgreSQL advisory lock under which a legacy database is adopted.
const PG_ADOPT_LOCK: i64 = 0x0068_7063_7365_7261; // "hpcsera"

/// The migrations of a backend, in order.
pub(crate) fn migrations(backend: Backend) -> &'static [Embedded] {
    match backend {
        Backend::Sqlite => MIGRATIONS.0,
        Backend::Postgres => MIGRATIONS.1,
    }
}

fn migration(&(version, name, sql): &Embedded) -> Migration {
    Migration::new(
        version,
        Cow::Borrowed(name),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        false,
    )
}

/// The embedded migrations of a backend as a source for sqlx's `Migrator`.
#[derive(Debug)]
struct Source(Backend);

type BoxDynError = Box<dyn std::error::Error + Send + Sync>;

impl<'s> MigrationSource<'s> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move { Ok(migrations(self.0).iter().map(migration).collect()) })
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Migration(e.to_string())
}

pub(crate) async fn run(store: &Store) -> Result<()> {
    adopt_legacy(store).await?;
    let migrator = Migrator::new(Source(store.backend)).await.map_err(failed)?;
    let mut conn = store.pool.acquire().await?;
    migrator.run_direct(&mut *conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::Migration(format!(
            "the database has schema migration {v}, which this hpcsera does not know; upgrade hpcsera"
        )),
        other => failed(other),
    })?;
    Ok(())
}

/// Moves the versions that the home-made migrator of earlier releases kept in
/// `schema_migrations` into sqlx's `_sqlx_migrations`, once.
async fn adopt_legacy(store: &Store) -> Result<()> {
    let legacy = match store.backend {
        Backend::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        Backend::Postgres => "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_migrations'",
    };
    if sqlx::query(legacy)
        .fetch_optional(&store.pool)
        .await?
        .is_none()
    {
        return Ok(());
    }
    let mut tx = store.begin_write().await?;
    if store.backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_ADOPT_LOCK)
            .execute(&mut *tx.tx)
            .await?;
        // Another replica may have adopted it while this one waited for the lock.
        if sqlx::query(legacy)
            .fetch_optional(&mut *tx.tx)
            .await?
            .is_none()
        {
            return Ok(());
        }
    }
    tx.tx.ensure_migrations_table().await.map_err(failed)?;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
            .fetch_all(&mut *tx.tx)
            .await?;
    let known = migrations(store.backend);
    for version in applied {
        let Some(m) = known.iter().find(|m| m.0 == version).map(migration) else {
            return Err(StoreError::Migration(format!(
                "the database has schema migration {version}, which this hpcsera does not know; upgrade hpcsera"
            )));
        };
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(version)
        .bind(m.description.as_ref())
        .bind(m.checksum.to_vec())
        .execute(&mut *tx.tx)
        .await?;
    }
    sqlx::query("DROP TABLE schema_migrations")
        .execute(&mut *tx.tx)
        .await?;
    tracing::info!("adopted the schema versions of an earlier hpcsera into _sqlx_migrations");
    tx.commit().await
}
