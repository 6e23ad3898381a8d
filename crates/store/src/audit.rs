//! The audit log of token use: who did what, when, with what outcome.

use crate::{Result, Store};

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
        for r in records {
            sqlx::query(
                "INSERT INTO audit_log (at, token_id, user_name, project, method, path, status, request_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.at)
            .bind(r.token_id.as_deref())
            .bind(r.user.as_deref())
            .bind(r.project.as_deref())
            .bind(&r.method)
            .bind(&r.path)
            .bind(i64::from(r.status))
            .bind(r.request_id.as_deref())
            .execute(&mut *tx.tx)
            .await?;
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
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                .bind(at)
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await
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
                    at: crate::col(r, 0)?,
                    token_id: crate::col(r, 1)?,
                    user: crate::col(r, 2)?,
                    project: crate::col(r, 3)?,
                    method: crate::col(r, 4)?,
                    path: crate::col(r, 5)?,
                    status: crate::col::<i64>(r, 6)? as u16,
                    request_id: crate::col(r, 7)?,
                })
            })
            .collect()
    }
}
