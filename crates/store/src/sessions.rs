//! Web UI sessions and one-time invitations: created, looked up, ended.
//!
//! Both are random 256-bit secrets handed to a browser (the session cookie) or to a person (the
//! invitation link); only their SHA-256 is stored, like token secrets, so a copy of the database
//! opens no session. Expiry is decided here, in one place: a session ends when it was idle longer
//! than the caller's idle limit or its absolute end has passed; an invitation when its end has
//! passed or it was used once. This module never sees a cookie or a request.

use crate::secrets::{hash_password, hash_token, random_secret};
use crate::{col, now_ms, Result, Store, StoreError};

/// How often a live session's last-seen time is written: a page view within this time of the
/// last write changes nothing in the database.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: i64,
    pub user: String,
    pub is_admin: bool,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new session: the secret for the cookie (shown once, never stored) and its CSRF token.
pub struct NewSession {
    pub secret: String,
    pub csrf: String,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewSession { .. }")
    }
}

impl Store {
    /// Starts a session for `user_id` that ends at the latest `max_age_ms` from now, and drops
    /// sessions that have ended (idle longer than `idle_ms`, or past their end).
    pub async fn create_session(
        &self,
        user_id: i64,
        idle_ms: i64,
        max_age_ms: i64,
    ) -> Result<NewSession> {
        let secret = random_secret();
        let csrf = random_secret();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(now.saturating_sub(idle_ms))
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (hash, user_id, csrf, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(hash_token(&secret))
        .bind(user_id)
        .bind(&csrf)
        .bind(now)
        .bind(now.saturating_add(max_age_ms))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(NewSession { secret, csrf })
    }

    /// The live session of a cookie's secret, or `None` when there is none: unknown, ended by
    /// logout, idle longer than `idle_ms`, or past its absolute end. A live session's last-seen
    /// time moves to now (written at most once a minute).
    pub async fn session(&self, secret: &str, idle_ms: i64) -> Result<Option<SessionRecord>> {
        let hash = hash_token(secret);
        let row = sqlx::query(
            "SELECT s.user_id, s.csrf, s.created_at, s.last_seen_at, s.expires_at, \
                    u.name AS user_name, u.is_admin, u.disabled_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let now = now_ms();
        let last_seen: i64 = col(&r, "last_seen_at")?;
        let expires_at: i64 = col(&r, "expires_at")?;
        let disabled = col::<Option<i64>>(&r, "disabled_at")?.is_some();
        if disabled || expires_at <= now || last_seen.saturating_add(idle_ms) <= now {
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY_MS {
            let mut tx = self.begin_write().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&mut *tx.tx)
                .await?;
            tx.commit().await?;
        }
        Ok(Some(SessionRecord {
            user_id: col(&r, "user_id")?,
            user: col(&r, "user_name")?,
            is_admin: col::<i64>(&r, "is_admin")? != 0,
            csrf: col(&r, "csrf")?,
            created_at: col(&r, "created_at")?,
            expires_at,
        }))
    }

    /// Ends a session (logout). Ending one that does not exist is not an error.
    pub async fn delete_session(&self, secret: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE hash = $1")
            .bind(hash_token(secret))
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Creates a one-time invitation for `user` (created, without a password, if it does not
    /// exist) valid for `valid_ms`. Returns the secret for the link; it is not stored.
    pub async fn create_invite(&self, user: &str, valid_ms: i64) -> Result<String> {
        let secret = random_secret();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query("SELECT id FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let user_id: i64 = match existing {
            Some(r) => col(&r, "id")?,
            None => col(
                &sqlx::query(
                    "INSERT INTO users (name, password_hash, is_admin, created_at) \
                     VALUES ($1, NULL, 0, $2) RETURNING id",
                )
                .bind(user)
                .bind(now)
                .fetch_one(&mut *tx.tx)
                .await?,
                0,
            )?,
        };
        sqlx::query("DELETE FROM invites WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query(
            "INSERT INTO invites (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_token(&secret))
        .bind(user_id)
        .bind(now)
        .bind(now.saturating_add(valid_ms))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(secret)
    }

    /// The user name an unused, unexpired invitation is for.
    pub async fn invite_user(&self, secret: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT u.name FROM invites i JOIN users u ON u.id = i.user_id \
             WHERE i.hash = $1 AND i.expires_at > $2",
        )
        .bind(hash_token(secret))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| col(&r, "name")).transpose()
    }

    /// Uses an invitation: sets the user's password, deletes the invitation and ends the
    /// user's sessions (a new password ends every old session). `NotFound` when the invitation
    /// is unknown, used or expired.
    pub async fn redeem_invite(&self, secret: &str, password: &str) -> Result<String> {
        let hash = hash_password(password)?;
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM invites WHERE hash = $1 AND expires_at > $2 RETURNING user_id",
        )
        .bind(hash_token(secret))
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or(StoreError::NotFound("invitation"))?;
        let user_id: i64 = col(&row, "user_id")?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(&hash)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await?;
        let name = col(
            &sqlx::query("SELECT name FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx.tx)
                .await?,
            "name",
        )?;
        tx.commit().await?;
        Ok(name)
    }
}
