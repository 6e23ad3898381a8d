//! What administrators do beyond making users, projects and memberships (`auth.rs`): the admin
//! flag, disabling accounts, every membership with its roles, and the audit log read with
//! filters. The `hpcsera admin` CLI and the web UI's admin pages both call these; neither has
//! its own copy of the SQL or the rules.

use crate::audit::AuditRecord;
use crate::auth::roles_col;
use crate::{col, now_ms, Result, Store, StoreError};
use hpcsera_api_types::RoleSet;

/// Most audit records one page shows.
pub const MAX_AUDIT_PAGE: u32 = 500;

/// One membership, as administrators see it.
#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub project: String,
    pub user: String,
    pub roles: RoleSet,
    pub since: i64,
}

/// Which audit records to read: each filter is optional; newest first, `before` (an id from
/// the previous page) for the next page.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    pub project: Option<String>,
    /// The start of the request path (`/api/v1/job`, `/ui/admin`), matched literally.
    pub action: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Only records with a smaller id (the cursor).
    pub before: Option<i64>,
    pub limit: u32,
}

/// `LIKE` text matching `s` literally at the start (with `\` as the escape character).
fn like_prefix(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Makes `user` an administrator (web UI admin pages) or not.
    pub async fn set_user_admin(&self, user: &str, admin: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE users SET is_admin = $1 WHERE name = $2")
            .bind(i64::from(admin))
            .bind(user)
            .execute(&mut *tx.tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        tx.commit().await
    }

    /// Disables an account (its sessions end, it cannot log in, its tokens are refused) or
    /// enables it again (its unexpired, unrevoked tokens work again).
    pub async fn set_user_disabled(&self, user: &str, disabled: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE users SET disabled_at = $1 WHERE name = $2")
            .bind(disabled.then(now_ms))
            .bind(user)
            .execute(&mut *tx.tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        if disabled {
            sqlx::query(
                "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            )
            .bind(user)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        // The user's tokens are refused (or accepted again) from the next request on.
        self.auth_changed();
        Ok(())
    }

    /// Every membership with its roles, by project and user (one query).
    pub async fn list_memberships(&self) -> Result<Vec<MemberRecord>> {
        let rows = sqlx::query(
            "SELECT p.name AS project, u.name AS user_name, m.roles, m.created_at FROM memberships m \
             JOIN projects p ON p.id = m.project_id JOIN users u ON u.id = m.user_id \
             ORDER BY p.name, u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MemberRecord {
                    project: col(r, "project")?,
                    user: col(r, "user_name")?,
                    roles: roles_col(r, "roles")?,
                    since: col(r, "created_at")?,
                })
            })
            .collect()
    }

    /// A page of the audit log, newest first, with each record's id (the next page's
    /// `before`). Only the filters given become conditions, so each query can use its index
    /// (`audit_log_user`, `audit_log_project`, `audit_log_at`, or the primary key).
    pub async fn audit_page(&self, q: &AuditQuery) -> Result<Vec<(i64, AuditRecord)>> {
        let mut conds: Vec<String> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.user.is_some() {
            conds.push(format!("user_name = {}", next()));
        }
        if q.project.is_some() {
            conds.push(format!("project = {}", next()));
        }
        if q.action.is_some() {
            conds.push(format!("path LIKE {} ESCAPE '\\'", next()));
        }
        if q.since.is_some() {
            conds.push(format!("at >= {}", next()));
        }
        if q.until.is_some() {
            conds.push(format!("at < {}", next()));
        }
        if q.before.is_some() {
            conds.push(format!("id < {}", next()));
        }
        let limit = next();
        let sql = format!(
            "SELECT id, at, token_id, user_name, project, method, path, status, request_id \
             FROM audit_log {} {} ORDER BY id DESC LIMIT {limit}",
            if conds.is_empty() { "" } else { "WHERE" },
            conds.join(" AND "),
        );
        let mut query = sqlx::query(&sql);
        for s in [&q.user, &q.project].into_iter().flatten() {
            query = query.bind(s.clone());
        }
        if let Some(a) = &q.action {
            query = query.bind(like_prefix(a));
        }
        for v in [q.since, q.until, q.before].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query
            .bind(i64::from(q.limit.clamp(1, MAX_AUDIT_PAGE)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    col(r, "id")?,
                    AuditRecord {
                        at: col(r, "at")?,
                        token_id: col(r, "token_id")?,
                        user: col(r, "user_name")?,
                        project: col(r, "project")?,
                        method: col(r, "method")?,
                        path: col(r, "path")?,
                        status: col::<i64>(r, "status")? as u16,
                        request_id: col(r, "request_id")?,
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(super::like_prefix("/ui/a_b%"), "/ui/a\\_b\\%%");
    }
}
