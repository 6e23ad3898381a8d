//! Users, projects, memberships and tokens.

use crate::secrets::{hash_password, hash_token};
use crate::{col, corrupt, now_ms, Result, Store, StoreError};
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use hpcsera_api_types::RoleSet;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    /// Disabled accounts cannot log in and their tokens are refused (`admin user disable`).
    pub disabled: bool,
    pub created_at: i64,
}

/// A request to create a token.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub user: &'a str,
    pub project: &'a str,
    pub name: &'a str,
    pub roles: RoleSet,
    pub site: Option<&'a str>,
    pub expires_at: Option<i64>,
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub user: String,
    pub project: String,
    pub roles: RoleSet,
    pub site: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
}

/// What a valid bearer token grants.
#[derive(Debug, Clone)]
pub struct AuthToken {
    pub token_id: String,
    pub token_name: String,
    pub user_id: i64,
    pub user: String,
    pub project_id: i64,
    pub project: String,
    pub roles: RoleSet,
    pub site: Option<String>,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Unknown,
    Revoked,
    Expired,
    NotAMember,
    /// The token's user account is disabled.
    Disabled,
}

/// A hash of a random password with the same parameters as real ones, computed once: an
/// unknown user (or one without a password) is verified against it, so that a login takes as
/// long whether or not the name exists.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&crate::secrets::random_secret()).unwrap_or_else(|_| {
            // Unreachable with argon2's defaults; a fixed valid PHC string keeps the timing.
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$6tDGl2sEXgfK4kLGqzGQTn0HJSqXsKQEZ9D3QpL1b1A".into()
        })
    })
}

/// A membership as its user sees it.
#[derive(Debug, Clone)]
pub struct MembershipRecord {
    pub project: String,
    pub description: String,
    pub since: i64,
    /// The roles the member may use in the project (the most a token of theirs there holds).
    pub roles: RoleSet,
}

impl Store {
    /// Creates a user; `password` is hashed with argon2.
    pub async fn create_user(
        &self,
        name: &str,
        password: Option<&str>,
        is_admin: bool,
    ) -> Result<UserRecord> {
        let hash = password.map(hash_password).transpose()?;
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(i64::from(is_admin))
        .bind(now)
        .fetch_one(&mut *tx.tx)
        .await;
        let row = exists_already(r, || format!("user {name:?} exists already"))?;
        tx.commit().await?;
        Ok(UserRecord {
            id: col(&row, 0)?,
            name: name.to_string(),
            is_admin,
            disabled: false,
            created_at: now,
        })
    }

    /// Checks a user's password. Returns the user when it matches. An unknown user and a user
    /// without a password cost one argon2 verification too (against a dummy hash), so the time
    /// taken does not tell whether a name exists.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, name, password_hash, is_admin, disabled_at, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let stored: Option<String> = match &row {
            Some(r) => col(r, "password_hash")?,
            None => None,
        };
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
        let password = password.to_string();
        // argon2 takes tens of milliseconds of CPU: off the async workers.
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(corrupt)?;
            Ok::<bool, StoreError>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(corrupt)??;
        let (Some(row), true, true) = (row, known, matches) else {
            return Ok(None);
        };
        let user = user_record(&row)?;
        // A disabled account is refused like a wrong password (after the same work).
        Ok((!user.disabled).then_some(user))
    }

    /// A user by name.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, name, is_admin, disabled_at, created_at FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_record).transpose()
    }

    /// The projects `user_id` is a member of, by name.
    pub async fn user_memberships(&self, user_id: i64) -> Result<Vec<MembershipRecord>> {
        let rows = sqlx::query(
            "SELECT p.name, p.description, m.created_at, m.roles FROM memberships m \
             JOIN projects p ON p.id = m.project_id WHERE m.user_id = $1 ORDER BY p.name",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MembershipRecord {
                    project: col(r, "name")?,
                    description: col(r, "description")?,
                    since: col(r, "created_at")?,
                    roles: roles_col(r, "roles")?,
                })
            })
            .collect()
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT id, name, is_admin, disabled_at, created_at FROM users ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_record).collect()
    }

    pub async fn create_project(&self, name: &str, description: &str) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO projects (name, description, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(description)
        .bind(now_ms())
        .fetch_one(&mut *tx.tx)
        .await;
        let row = exists_already(r, || format!("project {name:?} exists already"))?;
        tx.commit().await?;
        col(&row, 0)
    }

    /// Projects with their member names: `(name, description, members)`.
    pub async fn list_projects(&self) -> Result<Vec<(String, String, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT p.name, p.description, u.name AS member FROM projects p \
             LEFT JOIN memberships m ON m.project_id = p.id LEFT JOIN users u ON u.id = m.user_id \
             ORDER BY p.name, u.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
        for r in &rows {
            let p: String = col(r, "name")?;
            let member: Option<String> = col(r, "member")?;
            if out.last().map(|l| &l.0) != Some(&p) {
                out.push((p, col(r, "description")?, Vec::new()));
            }
            if let (Some(m), Some(last)) = (member, out.last_mut()) {
                last.2.push(m);
            }
        }
        Ok(out)
    }

    /// Makes `user` a member of `project` with all eight roles. Adding an existing member is
    /// not an error and leaves their roles as they are.
    pub async fn add_member(&self, user: &str, project: &str) -> Result<()> {
        self.put_member(user, project, RoleSet::all(), false).await
    }

    /// Makes `user` a member of `project` with `roles`; an existing member gets these roles.
    pub async fn add_member_with_roles(
        &self,
        user: &str,
        project: &str,
        roles: RoleSet,
    ) -> Result<()> {
        self.put_member(user, project, roles, true).await
    }

    async fn put_member(
        &self,
        user: &str,
        project: &str,
        roles: RoleSet,
        set_existing: bool,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (uid, pid) = user_and_project(&mut tx.tx, user, project).await?;
        let exists =
            sqlx::query("SELECT 1 FROM memberships WHERE user_id = $1 AND project_id = $2")
                .bind(uid)
                .bind(pid)
                .fetch_optional(&mut *tx.tx)
                .await?;
        if exists.is_none() {
            sqlx::query(
                "INSERT INTO memberships (user_id, project_id, created_at, roles) VALUES ($1, $2, $3, $4)",
            )
            .bind(uid)
            .bind(pid)
            .bind(now_ms())
            .bind(i64::from(roles.bits()))
            .execute(&mut *tx.tx)
            .await?;
        } else if set_existing {
            set_roles(&mut tx.tx, uid, pid, roles).await?;
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(())
    }

    /// Changes the roles of an existing member. Their tokens can do at most these from the
    /// next request on (a token's effective roles are its own and its member's).
    pub async fn set_member_roles(&self, user: &str, project: &str, roles: RoleSet) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (uid, pid) = user_and_project(&mut tx.tx, user, project).await?;
        if !set_roles(&mut tx.tx, uid, pid, roles).await? {
            return Err(StoreError::NotFound("membership"));
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(())
    }

    /// The roles of `user_id` in `project_id`, or `None` when they are not a member.
    pub async fn member_roles(&self, user_id: i64, project_id: i64) -> Result<Option<RoleSet>> {
        let row =
            sqlx::query("SELECT roles FROM memberships WHERE user_id = $1 AND project_id = $2")
                .bind(user_id)
                .bind(project_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| roles_col(&r, "roles")).transpose()
    }

    /// Removes a membership; the member's tokens for the project stop working at once.
    pub async fn remove_member(&self, user: &str, project: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let (uid, pid) = user_and_project(&mut tx.tx, user, project).await?;
        let r = sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND project_id = $2")
            .bind(uid)
            .bind(pid)
            .execute(&mut *tx.tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("membership"));
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(())
    }

    pub async fn is_member(&self, user_id: i64, project: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT p.id FROM projects p JOIN memberships m ON m.project_id = p.id \
             WHERE p.name = $1 AND m.user_id = $2",
        )
        .bind(project)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| col(&r, 0)).transpose()
    }

    /// Revokes a token; when `user_id` is given, only that user's token.
    pub async fn revoke_token(&self, id: &str, user_id: Option<i64>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR user_id = $3)",
        )
        .bind(now_ms())
        .bind(id)
        .bind(user_id)
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        tx.commit().await?;
        self.auth_changed();
        Ok(())
    }

    /// The tokens of `user_id` in projects it is a member of now, optionally only in
    /// `project_id`, oldest first. A former member's tokens of that project are not listed
    /// (they stopped working with the membership).
    pub async fn list_user_tokens(
        &self,
        user_id: i64,
        project_id: Option<i64>,
    ) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, u.name AS user_name, p.name AS project, t.roles, t.site, t.expires_at, t.revoked_at, \
             t.last_used_at, t.created_at \
             FROM tokens t JOIN users u ON u.id = t.user_id JOIN projects p ON p.id = t.project_id \
             JOIN memberships m ON m.user_id = t.user_id AND m.project_id = t.project_id \
             WHERE t.user_id = $1 AND ($2 IS NULL OR t.project_id = $2) ORDER BY t.created_at, t.id",
        )
        .bind(user_id)
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_record).collect()
    }

    /// Lists tokens, optionally of one user.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, u.name AS user_name, p.name AS project, t.roles, t.site, t.expires_at, t.revoked_at, \
             t.last_used_at, t.created_at \
             FROM tokens t JOIN users u ON u.id = t.user_id JOIN projects p ON p.id = t.project_id \
             WHERE ($1 IS NULL OR u.name = $1) ORDER BY t.created_at, t.id",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_record).collect()
    }

    /// Looks up a bearer token by the hash of its secret: from the verified-token cache
    /// (`authcache.rs`: revocations by this process are seen at once, by others within
    /// `AUTH_RECHECK`) or the database.
    pub async fn authenticate(&self, secret: &str) -> Result<Result<AuthToken, TokenRefusal>> {
        let hash = hash_token(secret);
        self.recheck_auth_generation().await?;
        if let Some(token) = self.auth_cache.get(&hash) {
            return Ok(Ok(token));
        }
        let epoch = self.auth_cache.epoch();
        let answer = self.authenticate_uncached(&hash).await?;
        if let Ok(token) = &answer {
            self.auth_cache.insert(epoch, hash, token.clone());
        }
        Ok(answer)
    }

    /// Looks up a bearer token by the hash of its secret in the database.
    async fn authenticate_uncached(&self, hash: &str) -> Result<Result<AuthToken, TokenRefusal>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.roles, t.site, t.expires_at, t.revoked_at, t.created_at, \
                    u.id AS user_id, u.name AS user_name, p.id AS project_id, p.name AS project, \
                    m.roles AS member_roles, u.disabled_at \
             FROM tokens t JOIN users u ON u.id = t.user_id JOIN projects p ON p.id = t.project_id \
             LEFT JOIN memberships m ON m.user_id = t.user_id AND m.project_id = t.project_id \
             WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let revoked: Option<i64> = col(&r, "revoked_at")?;
        let expires_at: Option<i64> = col(&r, "expires_at")?;
        if revoked.is_some() {
            return Ok(Err(TokenRefusal::Revoked));
        }
        if expires_at.is_some_and(|e| e <= now_ms()) {
            return Ok(Err(TokenRefusal::Expired));
        }
        if col::<Option<i64>>(&r, "disabled_at")?.is_some() {
            return Ok(Err(TokenRefusal::Disabled));
        }
        let Some(member_roles) = col::<Option<i64>>(&r, "member_roles")? else {
            return Ok(Err(TokenRefusal::NotAMember));
        };
        // What the token may do now: its own roles, as far as its member still has them.
        let roles = roles_col(&r, "roles")?.bits() & RoleSet::from_bits(member_roles as u32).bits();
        Ok(Ok(AuthToken {
            token_id: col(&r, "id")?,
            token_name: col(&r, "name")?,
            roles: RoleSet::from_bits(roles),
            site: col(&r, "site")?,
            expires_at,
            created_at: col(&r, "created_at")?,
            user_id: col(&r, "user_id")?,
            user: col(&r, "user_name")?,
            project_id: col(&r, "project_id")?,
            project: col(&r, "project")?,
        }))
    }
}

/// A user row (`id, name, is_admin, disabled_at, created_at`).
pub(crate) fn user_record(r: &sqlx::any::AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: col(r, "id")?,
        name: col(r, "name")?,
        is_admin: col::<i64>(r, "is_admin")? != 0,
        disabled: col::<Option<i64>>(r, "disabled_at")?.is_some(),
        created_at: col(r, "created_at")?,
    })
}

/// A role bitmask column.
pub(crate) fn roles_col(r: &sqlx::any::AnyRow, name: &str) -> Result<RoleSet> {
    Ok(RoleSet::from_bits(col::<i64>(r, name)? as u32))
}

pub(crate) fn role_names(roles: RoleSet) -> String {
    if roles.is_empty() {
        return "none".into();
    }
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets a membership's roles; false when there is no such membership.
async fn set_roles(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    uid: i64,
    pid: i64,
    roles: RoleSet,
) -> Result<bool> {
    let r = sqlx::query("UPDATE memberships SET roles = $1 WHERE user_id = $2 AND project_id = $3")
        .bind(i64::from(roles.bits()))
        .bind(uid)
        .bind(pid)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

fn token_record(r: &sqlx::any::AnyRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: col(r, "id")?,
        name: col(r, "name")?,
        user: col(r, "user_name")?,
        project: col(r, "project")?,
        roles: roles_col(r, "roles")?,
        site: col(r, "site")?,
        expires_at: col(r, "expires_at")?,
        revoked_at: col(r, "revoked_at")?,
        last_used_at: col(r, "last_used_at")?,
        created_at: col(r, "created_at")?,
    })
}

pub(crate) async fn user_and_project(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &str,
    project: &str,
) -> Result<(i64, i64)> {
    let uid = sqlx::query("SELECT id FROM users WHERE name = $1")
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("user"))?;
    let pid = sqlx::query("SELECT id FROM projects WHERE name = $1")
        .bind(project)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("project"))?;
    Ok((col(&uid, 0)?, col(&pid, 0)?))
}

/// A unique-key violation of an insert as a conflict saying what exists already.
fn exists_already<T>(r: Result<T, sqlx::Error>, what: impl FnOnce() -> String) -> Result<T> {
    match r.map_err(StoreError::from) {
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(what())),
        r => r,
    }
}
