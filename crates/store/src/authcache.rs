//! The verified-token cache in front of [`Store::authenticate`], so that a request with a
//! known-good token costs no database round trip.
//!
//! **Invariant:** a cached token is one that the database said was valid, and no change to
//! what `authenticate` decides has been seen since. Two ways a change is seen:
//!
//! - **in this process, at once**: every store method that revokes a token or changes or
//!   removes a membership calls [`Store::auth_changed`] after its commit, which clears the
//!   cache before the method returns; a lookup that read the database before the clear
//!   cannot put its (stale) answer in afterwards (the *epoch* check). So a token revoked by
//!   this server fails on the very next request;
//! - **in any other process** (the admin CLI, another replica): triggers bump the one-row
//!   `auth_generation` counter in the same transaction as the change (migration 0018); a
//!   request that finds the last look at the counter older than [`RECHECK`] looks again
//!   before using the cache, and clears it when the counter moved. Staleness is at most
//!   [`RECHECK`] (plus one query's time).
//!
//! Expiry is checked on every hit, and an entry older than [`MAX_AGE`] is verified again
//! regardless. Refusals are never cached (unknown tokens are limited per peer elsewhere).
//! Bounded: at most [`MAX_ENTRIES`] tokens; a full cache is emptied.

use crate::{now_ms, AuthToken, Result, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How often the database's auth generation is looked at: the staleness bound for changes
/// made by another process.
pub const RECHECK: Duration = Duration::from_secs(1);
/// An entry is verified against the database again after this long, whatever the generation.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Most tokens held.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    token: AuthToken,
    at: Instant,
}

pub(crate) struct AuthCache {
    /// Verified tokens by the SHA-256 (hex) of their secret.
    entries: RwLock<HashMap<String, Entry>>,
    /// Bumped (under the write lock) by every clear: a lookup started before a clear may
    /// not insert after it.
    epoch: AtomicU64,
    /// The database's generation last seen (-1: not yet).
    generation: AtomicI64,
    /// When the generation was last looked at, in ms since `start`.
    checked_ms: AtomicU64,
    start: Instant,
}

impl AuthCache {
    pub(crate) fn new() -> AuthCache {
        AuthCache {
            entries: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            generation: AtomicI64::new(-1),
            checked_ms: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A cached, unexpired, not too old token for `hash`.
    pub(crate) fn get(&self, hash: &str) -> Option<AuthToken> {
        let entries = self.entries.read().ok()?;
        let e = entries.get(hash)?;
        let fresh = e.at.elapsed() < MAX_AGE && e.token.expires_at.is_none_or(|x| x > now_ms());
        fresh.then(|| e.token.clone())
    }

    /// The epoch to hand to [`AuthCache::insert`] after a database lookup.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches `token` unless the cache was cleared since `epoch` was read.
    pub(crate) fn insert(&self, epoch: u64, hash: String, token: AuthToken) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            hash,
            Entry {
                token,
                at: Instant::now(),
            },
        );
    }

    pub(crate) fn clear(&self) {
        let mut entries = match self.entries.write() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.epoch.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Whether the generation should be looked at now (claims the look for this caller).
    fn due(&self) -> bool {
        let now = self.elapsed_ms();
        let last = self.checked_ms.load(Ordering::Acquire);
        let never_looked = self.generation.load(Ordering::Acquire) < 0;
        let stale = now.saturating_sub(last) >= RECHECK.as_millis() as u64;
        // Only one of the requests that find it stale looks (the others use the cache).
        never_looked
            || (stale
                && self
                    .checked_ms
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok())
    }

    /// Records the database's generation; clears the cache when it moved.
    fn saw_generation(&self, generation: i64) {
        let before = self.generation.swap(generation, Ordering::AcqRel);
        if before != generation {
            self.clear();
        }
    }
}

impl Store {
    /// Looks at the database's auth generation when the last look is older than [`RECHECK`].
    pub(crate) async fn recheck_auth_generation(&self) -> Result<()> {
        if !self.auth_cache.due() {
            return Ok(());
        }
        let generation: i64 = crate::col(
            &sqlx::query("SELECT generation FROM auth_generation WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
            0,
        )?;
        self.auth_cache.saw_generation(generation);
        Ok(())
    }

    /// Drops every cached token: called by each store method that changes what
    /// `authenticate` decides, after its commit (the triggers tell other processes).
    pub fn auth_changed(&self) {
        self.auth_cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcsera_api_types::RoleSet;

    fn token(expires_at: Option<i64>) -> AuthToken {
        AuthToken {
            token_id: "t".into(),
            token_name: "n".into(),
            user_id: 1,
            user: "u".into(),
            project_id: 1,
            project: "p".into(),
            roles: RoleSet::all(),
            site: None,
            expires_at,
            created_at: 0,
        }
    }

    #[test]
    fn a_clear_between_lookup_and_insert_keeps_the_stale_answer_out() {
        let c = AuthCache::new();
        let e = c.epoch();
        c.clear();
        c.insert(e, "h".into(), token(None));
        assert!(c.get("h").is_none());
        c.insert(c.epoch(), "h".into(), token(None));
        assert!(c.get("h").is_some());
        c.clear();
        assert!(c.get("h").is_none());
    }

    #[test]
    fn expired_tokens_are_not_served() {
        let c = AuthCache::new();
        c.insert(c.epoch(), "h".into(), token(Some(now_ms() - 1)));
        assert!(c.get("h").is_none());
    }

    #[test]
    fn a_moved_generation_clears() {
        let c = AuthCache::new();
        c.saw_generation(3);
        c.insert(c.epoch(), "h".into(), token(None));
        c.saw_generation(3);
        assert!(c.get("h").is_some());
        c.saw_generation(4);
        assert!(c.get("h").is_none());
    }
}
