//! People's SSH public keys and signed code approvals.
//!
//! A key belongs to at most one user (its fingerprint is unique), so a verified signature
//! names one person. The store does not read keys or signatures: callers parse a key with
//! `hpcsera_approval::parse_public_key` and verify a signature with `hpcsera_approval::verify`
//! before they come here; the store keeps what they found and records the decision through
//! the same path as an unsigned one (`Store::decide_bundle`).

use crate::code::CodeDecision;
use crate::{col, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{SignedApproval, UserKey};
use sqlx::any::AnyRow;

/// The most keys one person may register.
pub const MAX_KEYS_PER_USER: i64 = 50;

/// A key to register (already parsed by the caller).
#[derive(Debug, Clone, Copy)]
pub struct NewUserKey<'a> {
    pub user_id: i64,
    pub name: &'a str,
    /// `type base64`, no comment.
    pub public_key: &'a str,
    /// `SHA256:…`.
    pub fingerprint: &'a str,
    pub algorithm: &'a str,
}

/// Who registered a key.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub user_id: i64,
    pub user: String,
    pub key_id: String,
}

const KEY_SELECT: &str =
    "SELECT id, name, fingerprint, algorithm, public_key, created_at FROM user_keys";

fn key_from_row(r: &AnyRow) -> Result<UserKey> {
    Ok(UserKey {
        id: col(r, "id")?,
        name: col(r, "name")?,
        fingerprint: col(r, "fingerprint")?,
        algorithm: col(r, "algorithm")?,
        public_key: col(r, "public_key")?,
        created_at: fmt_ms(col(r, "created_at")?),
    })
}

impl Store {
    /// Registers a key for a user: 409 when the key is registered already (by anyone) or
    /// the user has [`MAX_KEYS_PER_USER`] keys.
    pub async fn add_user_key(&self, k: &NewUserKey<'_>) -> Result<UserKey> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("SELECT COUNT(*) FROM user_keys WHERE user_id = $1")
            .bind(k.user_id)
            .fetch_one(&mut *tx.tx)
            .await?;
        if col::<i64>(&r, 0)? >= MAX_KEYS_PER_USER {
            return Err(StoreError::Conflict(format!(
                "a person may register at most {MAX_KEYS_PER_USER} keys; remove one first"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let inserted = sqlx::query(
            "INSERT INTO user_keys (id, user_id, name, public_key, fingerprint, algorithm, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(k.user_id)
        .bind(k.name)
        .bind(k.public_key)
        .bind(k.fingerprint)
        .bind(k.algorithm)
        .bind(now_ms())
        .execute(&mut *tx.tx)
        .await;
        if let Err(e) = inserted {
            let e = StoreError::from(e);
            return Err(if e.is_unique_violation() {
                StoreError::Conflict(format!("the key {} is registered already", k.fingerprint))
            } else {
                e
            });
        }
        tx.commit().await?;
        let r = sqlx::query(&format!("{KEY_SELECT} WHERE id = $1"))
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await?;
        key_from_row(&r)
    }

    /// A user's keys, oldest first.
    pub async fn list_user_keys(&self, user_id: i64) -> Result<Vec<UserKey>> {
        let rows = sqlx::query(&format!(
            "{KEY_SELECT} WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Removes one of a user's keys, by id or fingerprint (404 when the user has no such key).
    /// Approvals it signed stay as they were recorded.
    pub async fn remove_user_key(&self, user_id: i64, id_or_fingerprint: &str) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM user_keys WHERE user_id = $1 AND (id = $2 OR fingerprint = $2)",
        )
        .bind(user_id)
        .bind(id_or_fingerprint)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }

    /// Who registered the key with this fingerprint, if anyone.
    pub async fn key_owner(&self, fingerprint: &str) -> Result<Option<KeyOwner>> {
        let r = sqlx::query(
            "SELECT k.id, k.user_id, u.name FROM user_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(KeyOwner {
                key_id: col(&r, "id")?,
                user_id: col(&r, "user_id")?,
                user: col(&r, "name")?,
            })
        })
        .transpose()
    }

    /// Approves a bundle as `user` — the owner of the key that signed `signed` — keeping the
    /// message and the signature for the agents to check. The same rules as
    /// [`Store::decide_bundle`] (member of the project, pending, HPC digest equal to the id).
    /// The caller verified the signature and the message.
    pub async fn approve_bundle_signed(
        &self,
        project: &str,
        id: &str,
        user: &str,
        signed: &SignedApproval,
    ) -> Result<CodeDecision> {
        self.decide(project, id, user, true, None, Some(signed))
            .await
    }
}
