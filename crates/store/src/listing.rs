//! Listings of jobs: a project's jobs by filter (newest first) and a sweep's members (by
//! index), both through one page query, [`Store::job_page`], that builds the page in the
//! database as one JSON row and ends it early past [`MAX_PAGE_BYTES`]. Every query is scoped
//! by project.

use crate::jobs::JobParts;
use crate::{col, corrupt, Result, Store};
use hpcsera_api_types::{Job, JobStatus};

/// The columns a page's JSON array holds per job, in [`JobParts`]' order (those of
/// [`JOB_SELECT`]); `true` for the columns that are JSON text, embedded as JSON.
pub(crate) const PAGE_COLUMNS: [(&str, bool); 27] = [
    ("j.seq", false),
    ("j.id", false),
    ("p.name", false),
    ("s.name", false),
    ("j.job_type", false),
    ("u.name", false),
    ("j.status", false),
    ("j.parameters", true),
    ("j.resources", true),
    ("j.granted_resources", true),
    ("j.metadata", true),
    ("j.callback_url", false),
    ("j.held", false),
    ("j.pending_op", false),
    ("j.pending_op_at", false),
    ("j.pending_op_by", false),
    ("j.batch_job_id", false),
    ("j.exit_code", false),
    ("j.message", false),
    ("j.sub_jobs", true),
    ("j.created_at", false),
    ("j.updated_at", false),
    ("j.finished_at", false),
    ("j.stdout_bytes", false),
    ("j.stderr_bytes", false),
    ("w.id", false),
    ("j.sweep_index", false),
];

/// The variable-size text of a stored job, as a page's budget counts it (in bytes, on the
/// columns as stored, so nothing is serialised a second time).
const PAGE_ROW_BYTES: &str = "512 + octet_length(j.parameters) + octet_length(j.resources) \
     + COALESCE(octet_length(j.granted_resources), 0) + COALESCE(octet_length(j.metadata), 0) \
     + COALESCE(octet_length(j.message), 0) + octet_length(j.sub_jobs)";

/// About how much of a job listing's answer one page may hold (the jobs' parameters,
/// metadata, messages and sub-job states); a page ends early past it, with a cursor.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The order of a page of jobs (see [`Store::job_page`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum PageOrder {
    /// A project's listing: newest first.
    NewestFirst,
    /// A sweep's members: by index.
    SweepIndex,
}

/// A value bound to a page's query.
pub(crate) enum Bind {
    I64(i64),
    Str(String),
}

/// The binds of a query being built, numbered as they are pushed.
#[derive(Default)]
pub(crate) struct Binds(Vec<Bind>);

impl Binds {
    /// Adds a value; returns its placeholder (`$N`).
    pub(crate) fn push(&mut self, b: Bind) -> String {
        self.0.push(b);
        format!("${}", self.0.len())
    }
}

/// Filter and page of a job listing (newest first).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub statuses: Vec<JobStatus>,
    pub site: Option<String>,
    pub job_type: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Only jobs older than this sequence number (from the previous page's cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

impl Store {
    /// A page of the project's jobs, newest first, and the sequence number to continue
    /// from when there are more.
    pub async fn list_jobs(
        &self,
        project_id: i64,
        f: &JobFilter,
    ) -> Result<(Vec<Job>, Option<i64>)> {
        let mut binds = Binds::default();
        let mut cond = format!(
            "j.project_id = {} AND j.deleted_at IS NULL",
            binds.push(Bind::I64(project_id))
        );
        if !f.statuses.is_empty() {
            let list: Vec<String> = f
                .statuses
                .iter()
                .map(|s| binds.push(Bind::Str(s.as_str().into())))
                .collect();
            cond += &format!(" AND j.status IN ({})", list.join(", "));
        }
        if let Some(site) = &f.site {
            cond += &format!(" AND s.name = {}", binds.push(Bind::Str(site.clone())));
        }
        if let Some(jt) = &f.job_type {
            cond += &format!(" AND j.job_type = {}", binds.push(Bind::Str(jt.clone())));
        }
        if let Some(t) = f.created_after {
            cond += &format!(" AND j.created_at >= {}", binds.push(Bind::I64(t)));
        }
        if let Some(t) = f.created_before {
            cond += &format!(" AND j.created_at < {}", binds.push(Bind::I64(t)));
        }
        if let Some(seq) = f.before_seq {
            cond += &format!(" AND j.seq < {}", binds.push(Bind::I64(seq)));
        }
        let (jobs, more) = self
            .job_page(&cond, binds, PageOrder::NewestFirst, f.limit)
            .await?;
        let next = jobs.last().map(|(seq, _)| *seq).filter(|_| more);
        Ok((jobs.into_iter().map(|(_, j)| j).collect(), next))
    }

    /// A page of jobs matching `cond` (conditions on `jobs j`, `sites s`, `projects p`,
    /// `users u`, `sweeps w` with the placeholders of `binds`), at most `limit` (1 to 1000) in
    /// `order`, with each job's sequence number; and whether more follow. The page ends early
    /// once it holds [`MAX_PAGE_BYTES`] of job text, so neither memory nor the answer grows
    /// with the jobs' sizes. The one listing of jobs: a project's and a sweep's.
    ///
    /// One statement and ONE row, whatever the page's size: the database builds the page as a
    /// JSON array (`json_group_array`, `json_agg`) with the JSON columns embedded, so one value
    /// crosses from the database instead of a row per job, and it is parsed once, straight
    /// into the jobs. The rows come from the index that matches the order (`jobs(project_id,
    /// seq)`, `jobs(sweep_seq, sweep_index)`); the byte budget is a running sum over them.
    pub(crate) async fn job_page(
        &self,
        cond: &str,
        binds: Binds,
        order: PageOrder,
        limit: u32,
    ) -> Result<(Vec<(i64, Job)>, bool)> {
        let limit = limit.clamp(1, 1000);
        let (key, dir) = match order {
            PageOrder::NewestFirst => ("seq", "DESC"),
            PageOrder::SweepIndex => ("sweep_index", "ASC"),
        };
        let postgres = self.backend == crate::Backend::Postgres;
        let row: Vec<String> = PAGE_COLUMNS
            .iter()
            .map(|(c, json)| match (json, postgres) {
                (false, _) => c.to_string(),
                (true, false) => format!("json({c})"),
                (true, true) => format!("{c}::json"),
            })
            .collect();
        let page = if postgres {
            format!(
                "COALESCE(json_agg(json_build_array({}))::text, '[]')",
                row.join(", ")
            )
        } else {
            format!("json_group_array(json_array({}))", row.join(", "))
        };
        // The limit is written into the SQL, not bound: with `LIMIT $n` PostgreSQL's generic
        // plan of the prepared statement assumes a large result and hash-joins the whole
        // table, so it keeps planning each call anew (1–3 ms of planning for a 1 ms query); with
        // the number in the text it settles on the generic plan after five calls (0.02 ms).
        // A number we clamped, never input text.
        let limit_at = i64::from(limit) + 1;
        // `page`: the rows from the index, narrow (sequence number, order key, size);
        // `budget`: the running sum of their sizes; then the page's jobs, joined by primary
        // key and aggregated (in any order: sorted below).
        let sql = format!(
            "WITH page AS (SELECT j.seq, j.{key} AS k, {PAGE_ROW_BYTES} AS bytes {} \
             WHERE {cond} ORDER BY j.{key} {dir} LIMIT {limit_at}), \
             budget AS (SELECT seq, COUNT(*) OVER () AS fetched, SUM(bytes) OVER (ORDER BY k {dir} \
             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - bytes AS bytes_before FROM page) \
             SELECT {page} AS page, MAX(b.fetched) AS fetched FROM budget b JOIN jobs j ON j.seq = b.seq \
             JOIN projects p ON p.id = j.project_id JOIN sites s ON s.id = j.site_id \
             JOIN users u ON u.id = j.owner_id LEFT JOIN sweeps w ON w.seq = j.sweep_seq \
             WHERE b.bytes_before < {MAX_PAGE_BYTES}",
            job_tables!(),
        );
        let mut q = sqlx::query(&sql);
        for b in binds.0 {
            q = match b {
                Bind::I64(v) => q.bind(v),
                Bind::Str(v) => q.bind(v),
            };
        }
        let r = q.fetch_one(&self.pool).await?;
        let text: String = col(&r, "page")?;
        let fetched: Option<i64> = col(&r, "fetched")?;
        let mut parts: Vec<JobParts> = serde_json::from_str(&text).map_err(corrupt)?;
        match order {
            PageOrder::NewestFirst => parts.sort_unstable_by_key(|p| std::cmp::Reverse(p.seq)),
            PageOrder::SweepIndex => parts.sort_unstable_by_key(|p| p.sweep_index),
        }
        // Rows past the budget were left out (fewer than fetched), or one more than asked
        // for came: either way, more follow.
        let more = parts.len() > limit as usize || (parts.len() as i64) < fetched.unwrap_or(0);
        let jobs = parts
            .into_iter()
            .take(limit as usize)
            .map(JobParts::into_job)
            .collect::<Result<_>>()?;
        Ok((jobs, more))
    }
}
