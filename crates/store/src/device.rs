//! OAuth 2.0 device authorization requests (RFC 8628): asked for by a client, decided by a
//! person in the web UI, redeemed once by the client for an ordinary token.
//!
//! Both codes are secrets handed out once and kept only as SHA-256 hashes (`secrets`): the
//! device code (256 bits) is the client's proof at the token endpoint, the user code (eight
//! letters) what the person types. A request is `pending` until a person `approved` (with the
//! roles and lifetime granted, never more than asked) or `denied` it, and `redeemed` once the
//! token was issued. Every poll and the redemption lock the request's row (`FOR UPDATE` on
//! PostgreSQL, the write lock on SQLite), so two redemptions of one device code make one token
//! and polling too fast is noticed exactly. The token is made by the same insert as every
//! other token (`mint::insert_token`), in the redemption's transaction. This module never
//! decides what a person may grant (the web UI does, with the membership roles); it only
//! re-checks membership where it writes.

use crate::auth::{NewToken, TokenRecord};
use crate::mint::insert_token;
use crate::secrets::{hash_token, random_secret};
use crate::{col, now_ms, Result, Store, StoreError};
use hpcsera_api_types::oauth::{USER_CODE_ALPHABET, USER_CODE_LEN};
use hpcsera_api_types::RoleSet;
use rand::Rng;

/// Most requests waiting for a person at once (all clients together); more are refused
/// until some expire, so that unauthenticated requests cannot grow the table without bound.
pub const MAX_PENDING_DEVICE_GRANTS: i64 = 10_000;
/// How long an ended request is kept after it expired, so that a late poll still hears
/// `expired_token` (after that, the device code is unknown).
const KEEP_AFTER_EXPIRY_MS: i64 = 3_600_000;
/// The interval a client must keep grows by this much with each `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_STEP_S: i64 = 5;

/// A device authorization request to store.
#[derive(Debug, Clone)]
pub struct NewDeviceGrant<'a> {
    pub client_name: &'a str,
    pub project: &'a str,
    pub roles: RoleSet,
    pub site: Option<&'a str>,
    /// The lifetime asked for the token, in ms.
    pub lifetime_ms: i64,
    /// How long the codes stay valid, in ms.
    pub valid_ms: i64,
    /// The polling interval the client must keep, in seconds.
    pub interval_s: i64,
}

/// The codes of a new request: handed to the client once, never stored.
pub struct DeviceCodes {
    pub id: String,
    pub device_code: String,
    /// Eight letters of the user code alphabet (shown as `WDJB-MJHT`).
    pub user_code: String,
    pub expires_at: i64,
}

impl std::fmt::Debug for DeviceCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCodes")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A request waiting for a person, as the verification page shows it.
#[derive(Debug, Clone)]
pub struct DeviceGrantRecord {
    pub id: String,
    pub client_name: String,
    pub project: String,
    pub roles: RoleSet,
    pub site: Option<String>,
    pub lifetime_ms: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A person's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceDecision {
    /// Grant these roles (a subset of those asked) for this long (at most as long as asked).
    Approve {
        roles: RoleSet,
        lifetime_ms: i64,
    },
    Deny,
}

/// What a token request with a device code gets.
#[derive(Debug)]
pub enum DevicePoll {
    /// No decision yet: ask again after the interval.
    Pending,
    /// Asked sooner than the interval allows; the interval is now this many seconds.
    SlowDown {
        interval_s: i64,
    },
    Denied,
    Expired,
    /// Unknown, used already, asked for by another client, or no longer grantable: why.
    Invalid(&'static str),
    /// The token, made now: the request is used up.
    Issued(Box<IssuedToken>),
}

/// A token issued for a device code.
pub struct IssuedToken {
    pub token: TokenRecord,
    pub secret: String,
    /// The grant's id, for the audit.
    pub grant_id: String,
    /// The lifetime granted, in ms (the token expires this long after it was made).
    pub lifetime_ms: i64,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// A fresh user code: [`USER_CODE_LEN`] letters drawn uniformly from the alphabet (OS RNG).
fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect()
}

/// The row of a request, locked for a poll.
#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    client_name: String,
    project: String,
    site: Option<String>,
    expires_at: i64,
    interval_s: i64,
    last_poll_at: Option<i64>,
    status: String,
    user_id: Option<i64>,
    granted_roles: Option<i64>,
    granted_ms: Option<i64>,
}

impl Store {
    /// Stores a new request and returns its codes. Ended requests that expired more than an
    /// hour ago are dropped first; `Conflict` when [`MAX_PENDING_DEVICE_GRANTS`] are waiting.
    pub async fn create_device_grant(&self, g: &NewDeviceGrant<'_>) -> Result<DeviceCodes> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM device_grants WHERE expires_at <= $1")
            .bind(now.saturating_sub(KEEP_AFTER_EXPIRY_MS))
            .execute(&mut *tx.tx)
            .await?;
        let waiting: i64 = col(
            &sqlx::query(
                "SELECT COUNT(*) AS n FROM device_grants WHERE status = 'pending' AND expires_at > $1",
            )
            .bind(now)
            .fetch_one(&mut *tx.tx)
            .await?,
            "n",
        )?;
        if waiting >= MAX_PENDING_DEVICE_GRANTS {
            return Err(StoreError::Conflict(
                "too many device login requests are waiting; try again in a few minutes".into(),
            ));
        }
        // A user code must name one request; draw again on the (rare) collision.
        let mut user_code = new_user_code();
        while sqlx::query("SELECT 1 FROM device_grants WHERE user_hash = $1")
            .bind(hash_token(&user_code))
            .fetch_optional(&mut *tx.tx)
            .await?
            .is_some()
        {
            user_code = new_user_code();
        }
        let codes = DeviceCodes {
            id: uuid::Uuid::new_v4().to_string(),
            device_code: random_secret(),
            user_code,
            expires_at: now.saturating_add(g.valid_ms),
        };
        sqlx::query(
            "INSERT INTO device_grants (id, device_hash, user_hash, client_name, project, roles, \
             site, lifetime_ms, created_at, expires_at, interval_s, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending')",
        )
        .bind(&codes.id)
        .bind(hash_token(&codes.device_code))
        .bind(hash_token(&codes.user_code))
        .bind(g.client_name)
        .bind(g.project)
        .bind(i64::from(g.roles.bits()))
        .bind(g.site)
        .bind(g.lifetime_ms)
        .bind(now)
        .bind(codes.expires_at)
        .bind(g.interval_s)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// The pending, unexpired request of a (normalised) user code.
    pub async fn device_grant_by_user_code(
        &self,
        user_code: &str,
    ) -> Result<Option<DeviceGrantRecord>> {
        let row = sqlx::query(
            "SELECT id, client_name, project, roles, site, lifetime_ms, created_at, expires_at \
             FROM device_grants WHERE user_hash = $1 AND status = 'pending' AND expires_at > $2",
        )
        .bind(hash_token(user_code))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DeviceGrantRecord {
                id: col(&r, "id")?,
                client_name: col(&r, "client_name")?,
                project: col(&r, "project")?,
                roles: RoleSet::from_bits(col::<i64>(&r, "roles")? as u32),
                site: col(&r, "site")?,
                lifetime_ms: col(&r, "lifetime_ms")?,
                created_at: col(&r, "created_at")?,
                expires_at: col(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    /// Records a person's decision on a pending, unexpired request: `NotFound("device
    /// request")` when it is not (any more); for an approval, `NotFound("membership")` unless
    /// the person is a member of the request's project, and `Invalid` when the decision grants
    /// roles or a lifetime beyond what was asked, or roles beyond the person's membership.
    pub async fn decide_device_grant(
        &self,
        id: &str,
        user_id: i64,
        decision: DeviceDecision,
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(&format!(
            "SELECT project, roles, lifetime_ms FROM device_grants \
             WHERE id = $1 AND status = 'pending' AND expires_at > $2{}",
            self.for_update()
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or(StoreError::NotFound("device request"))?;
        let (status, roles, granted_ms) = match decision {
            DeviceDecision::Deny => ("denied", None, None),
            DeviceDecision::Approve { roles, lifetime_ms } => {
                let asked = RoleSet::from_bits(col::<i64>(&row, "roles")? as u32);
                let within = roles.iter().all(|r| asked.contains(r));
                if roles.is_empty() || !within || lifetime_ms <= 0 {
                    return Err(invalid(
                        "roles",
                        "grant at least one of the roles asked, and no other",
                    ));
                }
                if lifetime_ms > col::<i64>(&row, "lifetime_ms")? {
                    return Err(invalid("lifetime", "is longer than the lifetime asked"));
                }
                let project: String = col(&row, "project")?;
                let member = sqlx::query(
                    "SELECT m.roles FROM memberships m JOIN projects p ON p.id = m.project_id \
                     WHERE p.name = $1 AND m.user_id = $2",
                )
                .bind(&project)
                .bind(user_id)
                .fetch_optional(&mut *tx.tx)
                .await?
                .ok_or(StoreError::NotFound("membership"))?;
                let may = RoleSet::from_bits(col::<i64>(&member, "roles")? as u32);
                if roles.iter().any(|r| !may.contains(r)) {
                    return Err(invalid(
                        "roles",
                        "beyond the approver's roles in the project",
                    ));
                }
                ("approved", Some(i64::from(roles.bits())), Some(lifetime_ms))
            }
        };
        sqlx::query(
            "UPDATE device_grants SET status = $1, user_id = $2, granted_roles = $3, \
             granted_ms = $4, decided_at = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(user_id)
        .bind(roles)
        .bind(granted_ms)
        .bind(now)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// A token request with a device code from `client_name`. Polls sooner than 90 % of the
    /// interval after the last one get `SlowDown` (and a 5 s longer interval); an approved
    /// request is redeemed, once: the token is inserted and the request marked used in one
    /// transaction under the row lock.
    pub async fn poll_device_grant(
        &self,
        device_code: &str,
        client_name: &str,
    ) -> Result<DevicePoll> {
        let hash = hash_token(device_code);
        // An unknown code (a guess, or one deleted an hour after it expired) is answered from a
        // plain read, without the write lock that SQLite shares with every writer.
        let known = sqlx::query("SELECT 1 FROM device_grants WHERE device_hash = $1")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Ok(DevicePoll::Invalid("the device code is not known"));
        }
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row: Option<GrantRow> = sqlx::query_as(&format!(
            "SELECT id, client_name, project, site, expires_at, interval_s, last_poll_at, status, \
             user_id, granted_roles, granted_ms FROM device_grants WHERE device_hash = $1{}",
            self.for_update()
        ))
        .bind(&hash)
        .fetch_optional(&mut *tx.tx)
        .await?;
        let Some(g) = row else {
            return Ok(DevicePoll::Invalid("the device code is not known"));
        };
        if g.client_name != client_name {
            return Ok(DevicePoll::Invalid(
                "the device code was issued to another client",
            ));
        }
        if g.status == "redeemed" {
            return Ok(DevicePoll::Invalid("the device code was used already"));
        }
        if g.expires_at <= now {
            return Ok(DevicePoll::Expired);
        }
        let outcome = match g.status.as_str() {
            "denied" => DevicePoll::Denied,
            "approved" => match redeem(&mut tx.tx, &g, now).await? {
                Some(issued) => DevicePoll::Issued(Box::new(issued)),
                None => DevicePoll::Invalid(
                    "the person who approved may no longer grant this in the project",
                ),
            },
            _ => {
                let too_soon = g
                    .last_poll_at
                    .is_some_and(|last| (now - last) * 10 < g.interval_s * 1000 * 9);
                let interval_s = g.interval_s + if too_soon { SLOW_DOWN_STEP_S } else { 0 };
                sqlx::query(
                    "UPDATE device_grants SET last_poll_at = $1, interval_s = $2 WHERE id = $3",
                )
                .bind(now)
                .bind(interval_s)
                .bind(&g.id)
                .execute(&mut *tx.tx)
                .await?;
                if too_soon {
                    DevicePoll::SlowDown { interval_s }
                } else {
                    DevicePoll::Pending
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

/// Makes the token of an approved request and marks the request used, in `tx` (whose row
/// lock the caller holds). `None` when the approver is no longer a member of the project, or
/// no longer has the granted roles there.
async fn redeem(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    g: &GrantRow,
    now: i64,
) -> Result<Option<IssuedToken>> {
    let (Some(user_id), Some(roles), Some(granted_ms)) = (g.user_id, g.granted_roles, g.granted_ms)
    else {
        return Err(crate::corrupt(
            "an approved device request without its grant",
        ));
    };
    let user: String = col(
        &sqlx::query("SELECT name FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await?,
        "name",
    )?;
    let made = insert_token(
        tx,
        &NewToken {
            user: &user,
            project: &g.project,
            name: &g.client_name,
            roles: RoleSet::from_bits(roles as u32),
            site: g.site.as_deref(),
            expires_at: Some(now.saturating_add(granted_ms)),
        },
    )
    .await;
    let (token, secret) = match made {
        Ok(m) => m,
        // Membership ended, or its roles shrank below the grant, since the approval.
        Err(StoreError::Conflict(_) | StoreError::NotFound(_) | StoreError::Invalid(_)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    sqlx::query("UPDATE device_grants SET status = 'redeemed', token_id = $1 WHERE id = $2")
        .bind(&token.id)
        .bind(&g.id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(IssuedToken {
        token,
        secret,
        grant_id: g.id.clone(),
        lifetime_ms: granted_ms,
    }))
}

fn invalid(field: &str, problem: &str) -> StoreError {
    StoreError::Invalid(vec![hpcsera_api_types::FieldError::new(field, problem)])
}
