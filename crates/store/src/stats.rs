//! What `/metrics` asks the database at scrape time: jobs by site and status, when each site's
//! agents were last seen, webhook deliveries by status — three grouped queries, each driven by
//! an index (`jobs_site_status_seq`, the `site_agents` key, `webhook_deliveries_due`) — and the
//! connection pool's use, which needs no query.
//!
//! Read only; the numbers are for operators, never for decisions.

use crate::{col, Result, Store};

/// Most (site, status) rows read per scrape: label values stay bounded however many sites
/// exist (sites are made by admins and agents' tokens, never by clients).
const MAX_ROWS: i64 = 10_000;

/// The database's numbers for one scrape.
#[derive(Debug, Clone, Default)]
pub struct OpsStats {
    /// (site, status, jobs).
    pub jobs: Vec<(String, String, i64)>,
    /// (site, the most recent time any agent of the site was seen, Unix ms).
    pub agents_last_seen: Vec<(String, i64)>,
    /// (delivery status, deliveries).
    pub webhook_deliveries: Vec<(String, i64)>,
}

/// The connection pool right now.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    /// Open connections (idle and in use).
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Jobs by site and status, agents' last contact per site, deliveries by status.
    pub async fn ops_stats(&self) -> Result<OpsStats> {
        let jobs = sqlx::query(
            "SELECT s.name AS site, j.status AS status, COUNT(*) AS n FROM jobs j \
             JOIN sites s ON s.id = j.site_id GROUP BY s.name, j.status ORDER BY s.name, j.status LIMIT $1",
        )
        .bind(MAX_ROWS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((col(r, "site")?, col(r, "status")?, col(r, "n")?)))
        .collect::<Result<_>>()?;
        let agents_last_seen = sqlx::query(
            "SELECT s.name AS site, MAX(a.last_seen_at) AS seen FROM site_agents a \
             JOIN sites s ON s.id = a.site_id WHERE a.last_seen_at IS NOT NULL \
             GROUP BY s.name ORDER BY s.name LIMIT $1",
        )
        .bind(MAX_ROWS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((col(r, "site")?, col(r, "seen")?)))
        .collect::<Result<_>>()?;
        let webhook_deliveries = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((col(r, "status")?, col(r, "n")?)))
        .collect::<Result<_>>()?;
        Ok(OpsStats {
            jobs,
            agents_last_seen,
            webhook_deliveries,
        })
    }

    /// The connection pool's use (no query).
    pub fn pool_stats(&self) -> PoolStats {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            open: self.pool.size(),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }
}
