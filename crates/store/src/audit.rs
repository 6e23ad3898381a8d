//! The audit log of token use: who did what, when, with what outcome.

use crate::{Result, Store};

/// Most bytes of a request path kept in an audit record (cut on a character boundary).
pub const MAX_AUDIT_PATH_BYTES: usize = 256;
/// Most bytes of a method kept in an audit record.
const MAX_AUDIT_METHOD_BYTES: usize = 32;
/// Most bytes of a reason or peer address of an authentication failure.
const MAX_AUTH_LABEL_BYTES: usize = 64;
/// Audit rows per INSERT statement (8 parameters each, far below both databases' limits).
const AUDIT_ROWS_PER_INSERT: usize = 100;

/// Failed authentications of one minute, reason and peer address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailureCount {
    /// Start of the minute, Unix ms.
    pub minute: i64,
    /// Why the token was refused: `missing`, `malformed`, `unknown`, `revoked`, `expired`,
    /// `not_a_member`.
    pub reason: String,
    /// The client's address (the socket peer, or the forwarded address behind a trusted proxy).
    pub peer: String,
    pub count: i64,
}

/// One authenticated request.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub at: i64,
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub project: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub request_id: Option<String>,
}

impl Store {
    /// Writes a batch of audit records and the tokens' `last_used_at`, in one transaction.
    pub async fn write_audit(&self, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        // Many rows per statement: one statement per row cost most of the writer's time
        // (the audit log grows by one row per request, so this is the read path's write).
        for chunk in records.chunks(AUDIT_ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO audit_log (at, token_id, user_name, project, method, path, status, request_id) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.at)
                    .bind(r.token_id.as_deref())
                    .bind(r.user.as_deref())
                    .bind(r.project.as_deref())
                    .bind(hpcsera_api_types::cut_to_bytes(
                        &r.method,
                        MAX_AUDIT_METHOD_BYTES,
                    ))
                    .bind(hpcsera_api_types::cut_to_bytes(
                        &r.path,
                        MAX_AUDIT_PATH_BYTES,
                    ))
                    .bind(i64::from(r.status))
                    .bind(r.request_id.as_deref());
            }
            q.execute(&mut *tx.tx).await?;
        }
        let mut last_use: Vec<(&str, i64)> = Vec::new();
        for r in records {
            if let Some(t) = r.token_id.as_deref() {
                match last_use.iter_mut().find(|(id, _)| *id == t) {
                    Some(e) => e.1 = e.1.max(r.at),
                    None => last_use.push((t, r.at)),
                }
            }
        }
        for (id, at) in last_use {
            // Coarsened to a minute: a busy token is written at most once a minute.
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1 - 60000)")
                .bind(at)
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
    }

    /// Adds counts of failed authentications (one row per minute, reason and peer).
    pub async fn count_auth_failures(&self, counts: &[AuthFailureCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for c in counts {
            sqlx::query(
                "INSERT INTO auth_failures (minute, reason, peer, count) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (minute, reason, peer) DO UPDATE SET count = auth_failures.count + excluded.count",
            )
            .bind(c.minute)
            .bind(hpcsera_api_types::cut_to_bytes(&c.reason, MAX_AUTH_LABEL_BYTES))
            .bind(hpcsera_api_types::cut_to_bytes(&c.peer, MAX_AUTH_LABEL_BYTES))
            .bind(c.count)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await
    }

    /// The newest counts of failed authentications, newest minute first.
    pub async fn recent_auth_failures(&self, limit: u32) -> Result<Vec<AuthFailureCount>> {
        let rows = sqlx::query(
            "SELECT minute, reason, peer, count FROM auth_failures ORDER BY minute DESC, reason, peer LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuthFailureCount {
                    minute: crate::col(r, "minute")?,
                    reason: crate::col(r, "reason")?,
                    peer: crate::col(r, "peer")?,
                    count: crate::col(r, "count")?,
                })
            })
            .collect()
    }

    /// How many audit records and failure counts are stored (for operators and tests).
    pub async fn audit_row_counts(&self) -> Result<(i64, i64)> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM audit_log) AS audit, (SELECT COUNT(*) FROM auth_failures) AS failures",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((crate::col(&r, "audit")?, crate::col(&r, "failures")?))
    }

    /// The newest audit records, newest first (for operators and tests).
    pub async fn recent_audit(&self, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT at, token_id, user_name, project, method, path, status, request_id FROM audit_log \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    at: crate::col(r, "at")?,
                    token_id: crate::col(r, "token_id")?,
                    user: crate::col(r, "user_name")?,
                    project: crate::col(r, "project")?,
                    method: crate::col(r, "method")?,
                    path: crate::col(r, "path")?,
                    status: crate::col::<i64>(r, "status")? as u16,
                    request_id: crate::col(r, "request_id")?,
                })
            })
            .collect()
    }
}
