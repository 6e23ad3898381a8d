//! The one insert of a token: the admin CLI, the web UI's form and the device flow's
//! redemption all make tokens here, inside their own transaction, so the same checks hold for
//! each — the user is a member of the project, and the token's roles are within the member's
//! roles there. The secret is returned once and only its SHA-256 is stored.

use crate::auth::{role_names, roles_col, user_and_project, NewToken, TokenRecord};
use crate::secrets::hash_token;
use crate::{now_ms, Result, Store, StoreError};
use hpcsera_api_types::TOKEN_PREFIX;
use rand::distributions::Alphanumeric;
use rand::Rng;

impl Store {
    /// Creates a token for a member of the project. Returns the record and the secret,
    /// which is not stored and cannot be shown again.
    pub async fn create_token(&self, t: &NewToken<'_>) -> Result<(TokenRecord, String)> {
        let mut tx = self.begin_write().await?;
        let made = insert_token(&mut tx.tx, t).await?;
        tx.commit().await?;
        Ok(made)
    }
}

fn new_secret() -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{body}")
}

/// Inserts a token for a member of the project in `tx` (the one way tokens are made: the
/// admin CLI, the web UI and the device flow all come here). Returns the record and the
/// secret, which is not stored.
pub(crate) async fn insert_token(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    t: &NewToken<'_>,
) -> Result<(TokenRecord, String)> {
    if t.roles.is_empty() {
        return Err(StoreError::Invalid(vec![
            hpcsera_api_types::FieldError::new("roles", "a token needs at least one role"),
        ]));
    }
    let secret = new_secret();
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let (uid, pid) = user_and_project(tx, t.user, t.project).await?;
    let member =
        sqlx::query("SELECT roles FROM memberships WHERE user_id = $1 AND project_id = $2")
            .bind(uid)
            .bind(pid)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(member) = member else {
        return Err(StoreError::Conflict(format!(
            "user {:?} is not a member of project {:?}",
            t.user, t.project
        )));
    };
    let may = roles_col(&member, "roles")?;
    let beyond: Vec<&str> = t
        .roles
        .iter()
        .filter(|r| !may.contains(*r))
        .map(|r| r.as_str())
        .collect();
    if !beyond.is_empty() {
        return Err(StoreError::Invalid(vec![
            hpcsera_api_types::FieldError::new(
                "roles",
                format!(
                    "{} may not use {} in project {:?} (a member's roles there: {})",
                    t.user,
                    beyond.join(", "),
                    t.project,
                    role_names(may)
                ),
            ),
        ]));
    }
    sqlx::query(
        "INSERT INTO tokens (id, name, hash, user_id, project_id, roles, site, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(t.name)
    .bind(hash_token(&secret))
    .bind(uid)
    .bind(pid)
    .bind(i64::from(t.roles.bits()))
    .bind(t.site)
    .bind(t.expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((
        TokenRecord {
            id,
            name: t.name.to_string(),
            user: t.user.to_string(),
            project: t.project.to_string(),
            roles: t.roles,
            site: t.site.map(str::to_string),
            expires_at: t.expires_at,
            revoked_at: None,
            last_used_at: None,
            created_at: now,
        },
        secret,
    ))
}
