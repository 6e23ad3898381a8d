//! The store: the only place in hpcsera that writes SQL.
//!
//! One code path over two databases through sqlx's `Any` driver: SQLite (a file, WAL) as
//! the embedded default and PostgreSQL for production. Queries use `$N` placeholders, which
//! both accept; the few places where the dialects differ ask [`Store::backend`].
//! Times are stored as Unix milliseconds.

mod admin;
mod agent;
mod approvals;
mod audit;
mod auth;
mod authcache;
mod changes;
mod code;
mod code_refs;
mod device;
mod events;
mod group_commit;
mod idempotency;
mod insert;
#[macro_use]
mod jobs;
mod listing;
mod migrate;
mod mint;
mod output;
mod provenance;
mod retention;
mod secrets;
mod seed;
mod sessions;
mod sites;
mod stats;
mod sweep_ops;
mod sweeps;
#[cfg(test)]
mod tests;
mod transition;
mod util;
mod webhooks;
mod work_notify;

pub use admin::{AuditQuery, MemberRecord, MAX_AUDIT_PAGE};
pub use agent::{AgentRef, Claim, Expired};
pub use approvals::{KeyOwner, NewUserKey, MAX_KEYS_PER_USER};
pub use audit::{AuditRecord, AuthFailureCount, MAX_AUDIT_PATH_BYTES};
pub use auth::{AuthToken, MembershipRecord, NewToken, TokenRecord, TokenRefusal, UserRecord};
pub use authcache::{MAX_AGE as AUTH_CACHE_MAX_AGE, RECHECK as AUTH_RECHECK};
pub use changes::{JobChange, StatusReport};
pub use code::{CodeDecision, CodeRef};
pub use device::{
    DeviceCodes, DeviceDecision, DeviceGrantRecord, DevicePoll, IssuedToken, NewDeviceGrant,
    MAX_PENDING_DEVICE_GRANTS,
};
pub use events::EventFilter;
pub use jobs::{NewJobRecord, Submitted};
pub use listing::JobFilter;
pub use output::OutputSlice;
pub use provenance::{NewProvenance, ProvenanceLookup, ProvenanceQuery, StoredProvenance};
pub use secrets::{hash_token, random_secret};
pub use sessions::{NewSession, SessionRecord};
pub use stats::{OpsStats, PoolStats};
pub use sweep_ops::SweepOpCounts;
pub use sweeps::{NewMember, NewSweepRecord, SubmittedSweep};
pub use util::{fmt_ms, now_ms, parse_rfc3339_ms};
pub use webhooks::DueDelivery;

use hpcsera_api_types::FieldError;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Transaction};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the store. `Database` keeps the sqlx error as its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyMismatch,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time: writers queue here instead of holding pooled
    /// connections while they wait for the file lock. `None` on PostgreSQL.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Verified tokens (`authcache.rs`); shared by the clones of this handle, so that a
    /// revocation through any of them is seen by all at once.
    auth_cache: Arc<authcache::AuthCache>,
    /// The writer that commits concurrent submissions together (`group_commit.rs`).
    group_commit: Arc<group_commit::GroupCommit>,
    /// New work told across replicas (`work_notify.rs`: LISTEN/NOTIFY on PostgreSQL).
    work_notifier: Arc<work_notify::WorkNotifier>,
    /// Names of projects, sites and users by id, for answering a submission (`jobs.rs`).
    names: Arc<jobs::NameCache>,
    /// The job types submissions name (`sites.rs`).
    job_types: Arc<sites::JobTypeCache>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// A write transaction; on SQLite it also holds the process-wide write lock.
pub(crate) struct WriteTx<'a> {
    pub tx: Transaction<'static, sqlx::Any>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`) and runs migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Migration(
                "the database URL must start with sqlite:// or postgres://".into(),
            ));
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(30))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let db_file = match backend {
            Backend::Sqlite => sqlite_file(&url),
            Backend::Postgres => None,
        };
        if let Some(f) = &db_file {
            private_db_file(f);
        }
        let pool = options.connect(&url).await?;
        if let Some(f) = &db_file {
            // SQLite gives the -wal and -shm files the database file's mode; older installs
            // may have made them 0644.
            tighten_db_files(f);
        }
        let store = Store {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            auth_cache: Arc::new(authcache::AuthCache::new()),
            group_commit: Arc::default(),
            work_notifier: Arc::new(work_notify::WorkNotifier::new(backend, &url)),
            names: Arc::default(),
            job_types: Arc::default(),
        };
        migrate::run(&store).await?;
        store.drop_stat4_samples().await?;
        Ok(store)
    }

    /// Removes SQLite's `sqlite_stat4` samples (an `ANALYZE` leaves them; `sqlite_stat1`, the
    /// row counts the planner needs, stays). With samples, the bundled SQLite (built with
    /// `SQLITE_ENABLE_STAT4`) re-plans a statement each time a value is bound to a parameter
    /// that an indexed column is compared with, so every query parses and plans its SQL again
    /// on every call: reading one job cost 2.3 times the instructions (BENCHMARKS.md).
    /// Called at connect and after the harness's bulk load; a no-op without samples and on
    /// PostgreSQL.
    pub(crate) async fn drop_stat4_samples(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let has_samples = sqlx::query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat4'",
        )
        .fetch_optional(&self.pool)
        .await?
        .is_some()
            && sqlx::query("SELECT 1 FROM sqlite_stat4 LIMIT 1")
                .fetch_optional(&self.pool)
                .await?
                .is_some();
        if has_samples {
            let mut tx = self.begin_write().await?;
            sqlx::query("DELETE FROM sqlite_stat4")
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Opens (creating if needed) the SQLite database in `data_dir`. The directory is made
    /// 0700 (it holds password hashes and webhook secrets), the database files 0600.
    pub async fn open_data_dir(data_dir: &Path) -> Result<Store> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let cannot = |e: std::io::Error| {
            StoreError::Migration(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(cannot)?;
        // An existing directory (from an older version) is tightened too.
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(cannot)?;
        let path = data_dir.join("hpcsera.db");
        Store::connect(&format!("sqlite://{}", path.display())).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn begin_write(&self) -> Result<WriteTx<'_>> {
        let guard = match &self.write_lock {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let tx = match self.backend {
            // IMMEDIATE takes the file's write lock now (waiting up to busy_timeout), so a
            // second process (the admin CLI) cannot make this transaction fail half-way.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    /// `FOR UPDATE` where the database has it (row locks on PostgreSQL; SQLite's
    /// transactions are serialised by [`Store::begin_write`]).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }
}

/// The file of a `sqlite://PATH[?…]` URL (none for in-memory databases).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.starts_with(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// Creates the SQLite database file 0600 before SQLite does (it would use 0644). Errors
/// (it exists, a missing directory) are left to SQLite to report in its own words.
fn private_db_file(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

/// Makes the database file and its -wal/-shm files 0600 where they are more open.
fn tighten_db_files(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut names = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        names.push(p.into());
    }
    for p in names {
        if let Ok(m) = std::fs::metadata(&p) {
            if m.permissions().mode() & 0o077 != 0 {
                if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                {
                    tracing::warn!(file = %p.display(), error = %e, "cannot make the database file private");
                }
            }
        }
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Decodes a column, by name (or by position in a one-column answer), mapping errors into
/// [`StoreError`]. Rows of several columns are decoded by name (`col(r, "seq")`, or a
/// `#[derive(sqlx::FromRow)]` struct), so that a new column never shifts the others.
pub(crate) fn col<'r, T>(row: &'r AnyRow, idx: impl sqlx::ColumnIndex<AnyRow>) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    Ok(row.try_get(idx)?)
}
