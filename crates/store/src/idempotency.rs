//! Idempotency keys of submissions: a job's (`idempotency_keys`) and a sweep's
//! (`sweep_idempotency_keys`), the same columns and the same rules for both.
//!
//! A key is written in the transaction that creates what it names, so a unique violation on
//! it means another request with the same key won the race: [`create_once`] answers with what
//! that request created. A key met again with another request's hash is refused
//! ([`StoreError::IdempotencyMismatch`]), never answered with the other request's result.

use crate::util::{values_list, CHUNK};
use crate::{col, Result, StoreError};
use sqlx::{Any, AnyConnection, Pool};
use std::future::Future;

/// Which submissions a key names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keys {
    Jobs,
    Sweeps,
}

impl Keys {
    /// The table and the column of what a key names.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Keys::Jobs => ("idempotency_keys", "job_seq"),
            Keys::Sweeps => ("sweep_idempotency_keys", "sweep_seq"),
        }
    }

    fn find_sql(self) -> &'static str {
        match self {
            Keys::Jobs => {
                "SELECT k.request_hash, j.id FROM idempotency_keys k JOIN jobs j ON j.seq = k.job_seq \
                 WHERE k.project_id = $1 AND k.user_id = $2 AND k.key = $3"
            }
            Keys::Sweeps => {
                "SELECT k.request_hash, w.id FROM sweep_idempotency_keys k JOIN sweeps w ON w.seq = k.sweep_seq \
                 WHERE k.project_id = $1 AND k.user_id = $2 AND k.key = $3"
            }
        }
    }
}

/// A key as a user sent it in a project, with the hash of the request it came with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRecord<'a> {
    pub(crate) project_id: i64,
    pub(crate) user_id: i64,
    pub(crate) key: &'a str,
    pub(crate) hash: &'a str,
}

impl<'a> KeyRecord<'a> {
    /// The key of a submission (`idempotency` as a submission record holds it), if it has one.
    pub(crate) fn of(
        project_id: i64,
        user_id: i64,
        idempotency: &'a Option<(&'a str, String)>,
    ) -> Option<Self> {
        idempotency.as_ref().map(|(key, hash)| KeyRecord {
            project_id,
            user_id,
            key,
            hash,
        })
    }
}

/// Writes the key in the transaction that creates row `seq` (a job's or a sweep's).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    keys: Keys,
    k: &KeyRecord<'_>,
    seq: i64,
    now: i64,
) -> Result<()> {
    insert_many(conn, keys, &[(*k, seq)], now).await
}

/// Writes many keys (`(key, seq)` each) in the transaction that creates their rows, in
/// multi-row inserts of [`CHUNK`] rows (a group-commit batch's jobs).
pub(crate) async fn insert_many(
    conn: &mut AnyConnection,
    keys: Keys,
    rows: &[(KeyRecord<'_>, i64)],
    now: i64,
) -> Result<()> {
    let (table, seq_column) = keys.table();
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO {table} (project_id, user_id, key, request_hash, {seq_column}, created_at) VALUES {}",
            values_list(chunk.len(), 6, 1)
        );
        let mut q = sqlx::query(&sql);
        for (k, seq) in chunk {
            q = q
                .bind(k.project_id)
                .bind(k.user_id)
                .bind(k.key)
                .bind(k.hash)
                .bind(*seq)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The id of what an earlier request with this key created; `IdempotencyMismatch` when that
/// request was a different one.
pub(crate) async fn find(
    pool: &Pool<Any>,
    keys: Keys,
    k: &KeyRecord<'_>,
) -> Result<Option<String>> {
    let r = sqlx::query(keys.find_sql())
        .bind(k.project_id)
        .bind(k.user_id)
        .bind(k.key)
        .fetch_optional(pool)
        .await?;
    let Some(r) = r else { return Ok(None) };
    if col::<String>(&r, "request_hash")? != k.hash {
        return Err(StoreError::IdempotencyMismatch);
    }
    col(&r, "id").map(Some)
}

/// Creates with `insert` unless `find` finds what an earlier request with the same key
/// created; when another request with the key wins the race (a unique violation), answers
/// with what it created. Returns the result and whether this call created it.
pub(crate) async fn create_once<'k, T, F, FF, I, IF>(
    key: Option<KeyRecord<'k>>,
    find: F,
    insert: I,
) -> Result<(T, bool)>
where
    F: Fn(KeyRecord<'k>) -> FF,
    FF: Future<Output = Result<Option<T>>>,
    I: FnOnce() -> IF,
    IF: Future<Output = Result<T>>,
{
    if let Some(k) = key {
        if let Some(found) = find(k).await? {
            return Ok((found, false));
        }
    }
    match insert().await {
        Ok(created) => Ok((created, true)),
        Err(e) if e.is_unique_violation() && key.is_some() => {
            let k = key.ok_or(e)?;
            let found = find(k).await?.ok_or(StoreError::Conflict(
                "idempotency key is being used concurrently".into(),
            ))?;
            Ok((found, false))
        }
        Err(e) => Err(e),
    }
}
