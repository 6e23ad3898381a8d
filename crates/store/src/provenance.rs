//! Signed provenance manifests: the holder agent stores one per job (before it reports the
//! end), clients read it and search the digest index ("which job made this file?").
//!
//! **Invariants:** a manifest is written only through `lock_held` (the agent that holds the
//! job, before the job has ended; ended jobs are read-only) and replaces an earlier one of
//! the same job; its bytes are kept exactly as signed; the result files it names must be the
//! job's stored results with the same SHA-256 and size, and a result uploaded afterwards
//! drops the manifest (it must be signed again); every read and search takes the project.
//! The digest index (`provenance_digests`) is written in the manifest's transaction.

use crate::agent::AgentRef;
use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::provenance::{ManifestFacts, ProvenanceDigest, ProvenanceHit};
use hpcsera_api_types::{FieldError, JobStatus};
use std::collections::HashMap;

/// Most digests listed per job in a search answer.
const MAX_MATCHES: usize = 100;

/// A manifest as the agent uploads it.
#[derive(Debug, Clone, Copy)]
pub struct NewProvenance<'a> {
    /// The exact bytes the agent signed.
    pub manifest: &'a [u8],
    /// Base64 Ed25519 signature over `manifest`.
    pub signature: &'a str,
    /// `ed25519:…`, the key the agent says it signed with.
    pub agent_key: &'a str,
    /// What the manifest names (read by the caller with [`ManifestFacts::parse`]).
    pub facts: &'a ManifestFacts,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredProvenance {
    pub job_seq: i64,
    pub manifest: Vec<u8>,
    pub signature: String,
    pub agent_key: String,
}

/// A job's provenance, or why there is none: the job's status says (not ended yet, ended
/// without an agent, or the agent recorded none).
#[derive(Debug, Clone)]
pub enum ProvenanceLookup {
    Found(StoredProvenance),
    Missing(JobStatus),
}

/// What `GET /provenance` asks for; every field narrows the answer.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceQuery {
    /// Jobs whose manifest names a file (result, code or input) with this SHA-256.
    pub sha256: Option<String>,
    /// Jobs that ran the code bundle with this SHA-256.
    pub code_sha256: Option<String>,
    pub job_type: Option<String>,
    pub site: Option<String>,
    /// Ended at or after (Unix ms).
    pub ended_after: Option<i64>,
    /// Ended before (Unix ms).
    pub ended_before: Option<i64>,
    pub limit: u32,
    /// Only jobs older than this (the previous page's cursor).
    pub before_seq: Option<i64>,
}

impl Store {
    /// Stores (or replaces) the manifest of a job the agent holds and indexes its digests.
    pub async fn put_provenance(
        &self,
        agent: &AgentRef<'_>,
        job_id: &str,
        p: &NewProvenance<'_>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let seq = self.lock_held(&mut tx.tx, agent, job_id).await?.seq;
        let stored: HashMap<String, (String, i64)> =
            sqlx::query("SELECT name, sha256, size FROM job_results WHERE job_seq = $1")
                .bind(seq)
                .fetch_all(&mut *tx.tx)
                .await?
                .iter()
                .map(|r| Ok((col(r, "name")?, (col(r, "sha256")?, col(r, "size")?))))
                .collect::<Result<_>>()?;
        check_results(p.facts, &stored)?;
        let job_type: String = col(
            &sqlx::query("SELECT job_type FROM jobs WHERE seq = $1")
                .bind(seq)
                .fetch_one(&mut *tx.tx)
                .await?,
            0,
        )?;
        drop_provenance(&mut tx.tx, seq).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO job_provenance (job_seq, project_id, manifest, signature, agent_key, job_type, ended_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(seq)
        .bind(agent.project_id)
        .bind(p.manifest)
        .bind(p.signature)
        .bind(p.agent_key)
        .bind(&job_type)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        insert_digests(&mut tx.tx, agent.project_id, seq, &p.facts.digests).await?;
        tx.commit().await
    }

    /// A visible job's manifest, or its status when it has none.
    pub async fn provenance(&self, project_id: i64, job_id: &str) -> Result<ProvenanceLookup> {
        let r = sqlx::query(
            "SELECT j.seq, j.status, p.manifest, p.signature, p.agent_key FROM jobs j \
             LEFT JOIN job_provenance p ON p.job_seq = j.seq \
             WHERE j.id = $1 AND j.project_id = $2 AND j.deleted_at IS NULL",
        )
        .bind(job_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("job"))?;
        let status: JobStatus = col::<String>(&r, "status")?.parse().map_err(corrupt)?;
        let Some(manifest) = col::<Option<Vec<u8>>>(&r, "manifest")? else {
            return Ok(ProvenanceLookup::Missing(status));
        };
        Ok(ProvenanceLookup::Found(StoredProvenance {
            job_seq: col(&r, "seq")?,
            manifest,
            signature: col(&r, "signature")?,
            agent_key: col(&r, "agent_key")?,
        }))
    }

    /// The bytes and SHA-256 of one result file of a job, by the job's sequence number (from
    /// a [`StoredProvenance`] the caller was allowed to read).
    pub async fn result_data(&self, job_seq: i64, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let r =
            sqlx::query("SELECT sha256, data FROM job_results WHERE job_seq = $1 AND name = $2")
                .bind(job_seq)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        r.map(|r| Ok((col(&r, "sha256")?, col(&r, "data")?)))
            .transpose()
    }

    /// One page of the project's jobs with provenance that match `q`, newest first, and the
    /// sequence number to continue before when there are more.
    pub async fn search_provenance(
        &self,
        project_id: i64,
        q: &ProvenanceQuery,
    ) -> Result<(Vec<ProvenanceHit>, Option<i64>)> {
        let (sql, binds) = search_sql(q);
        let mut query = sqlx::query(&sql).bind(project_id);
        for b in &binds {
            query = match b {
                Bind::Text(s) => query.bind(s.clone()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let limit = q.limit.max(1) as usize;
        let more = rows.len() > limit;
        let mut hits = Vec::new();
        let mut seqs = Vec::new();
        for r in rows.iter().take(limit) {
            seqs.push(col::<i64>(r, "job_seq")?);
            hits.push(ProvenanceHit {
                job_id: col(r, "id")?,
                site: col(r, "site")?,
                job_type: col(r, "job_type")?,
                status: col::<String>(r, "status")?.parse().map_err(corrupt)?,
                ended_at: fmt_ms(col(r, "ended_at")?),
                agent_key: col(r, "agent_key")?,
                matches: Vec::new(),
            });
        }
        let wanted: Vec<&str> = [&q.sha256, &q.code_sha256]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut matches = self.matches(project_id, &seqs, &wanted).await?;
        for (hit, seq) in hits.iter_mut().zip(&seqs) {
            hit.matches = matches.remove(seq).unwrap_or_default();
        }
        Ok((hits, more.then(|| seqs.last().copied()).flatten()))
    }

    /// The digests of the given jobs (only those in `wanted`, when any), at most
    /// [`MAX_MATCHES`] per job, in one query.
    async fn matches(
        &self,
        project_id: i64,
        seqs: &[i64],
        wanted: &[&str],
    ) -> Result<HashMap<i64, Vec<ProvenanceDigest>>> {
        let mut out: HashMap<i64, Vec<ProvenanceDigest>> = HashMap::new();
        if seqs.is_empty() {
            return Ok(out);
        }
        let list = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sql = format!(
            "SELECT job_seq, role, name, sha256, size FROM provenance_digests WHERE project_id = $1 AND job_seq IN ({})",
            list(2, seqs.len())
        );
        if !wanted.is_empty() {
            sql.push_str(&format!(
                " AND sha256 IN ({})",
                list(2 + seqs.len(), wanted.len())
            ));
        }
        sql.push_str(" ORDER BY job_seq, role, name");
        let mut query = sqlx::query(&sql).bind(project_id);
        for s in seqs {
            query = query.bind(*s);
        }
        for w in wanted {
            query = query.bind(*w);
        }
        for r in query.fetch_all(&self.pool).await? {
            let list = out.entry(col(&r, "job_seq")?).or_default();
            if list.len() < MAX_MATCHES {
                list.push(ProvenanceDigest {
                    role: col::<String>(&r, "role")?.parse().map_err(corrupt)?,
                    name: col(&r, "name")?,
                    sha256: col(&r, "sha256")?,
                    size: col::<Option<i64>>(&r, "size")?.map(|s| s.max(0) as u64),
                });
            }
        }
        Ok(out)
    }
}

/// Every result file a manifest names must be a stored result of the job with the same
/// SHA-256 and size (else 422 naming the file).
fn check_results(facts: &ManifestFacts, stored: &HashMap<String, (String, i64)>) -> Result<()> {
    let mut problems = Vec::new();
    for (name, sha, size) in facts.results() {
        match stored.get(name) {
            Some((s, n)) if s == sha && size.is_none_or(|z| z as i64 == *n) => {}
            Some(_) => problems.push(FieldError::new(
                format!("manifest.results/{name}"),
                "differs from the stored result file (SHA-256 or size)",
            )),
            None => problems.push(FieldError::new(
                format!("manifest.results/{name}"),
                "is not a result file of the job; upload it first",
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Invalid(problems))
    }
}

/// Removes a job's manifest and its digests (a new manifest or a changed result replaces it).
pub(crate) async fn drop_provenance(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    seq: i64,
) -> Result<()> {
    for sql in [
        "DELETE FROM provenance_digests WHERE job_seq = $1",
        "DELETE FROM job_provenance WHERE job_seq = $1",
    ] {
        sqlx::query(sql).bind(seq).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Inserts the digest rows, 100 to a statement; a (digest, role, name) named twice is kept
/// once.
async fn insert_digests(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    project_id: i64,
    seq: i64,
    digests: &[ProvenanceDigest],
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<&ProvenanceDigest> = digests
        .iter()
        .filter(|d| seen.insert((d.sha256.as_str(), d.role, d.name.as_str())))
        .collect();
    for chunk in unique.chunks(100) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 3 + i * 4;
                format!("($1, ${b}, $2, ${}, ${}, ${})", b + 1, b + 2, b + 3)
            })
            .collect();
        let sql = format!(
            "INSERT INTO provenance_digests (project_id, sha256, job_seq, role, name, size) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(project_id).bind(seq);
        for d in chunk {
            q = q
                .bind(d.sha256.as_str())
                .bind(d.role.as_str())
                .bind(d.name.as_str())
                .bind(d.size.map(|s| s as i64));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

enum Bind {
    Text(String),
    Int(i64),
}

/// The search's SQL (`$1` is the project) and its other values. With a digest the query is
/// driven by the digest index (`provenance_digests` primary key: project, sha256, job);
/// without one by `job_provenance(project_id, job_type, job_seq)` or `(project_id, job_seq)`.
fn search_sql(q: &ProvenanceQuery) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let next = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        format!("${}", binds.len() + 1)
    };
    let mut cond = vec![
        "p.project_id = $1".to_string(),
        "j.deleted_at IS NULL".into(),
    ];
    let mut from = "job_provenance p".to_string();
    let digest = match (&q.sha256, &q.code_sha256) {
        (Some(s), code) => Some((s, code.as_ref())),
        (None, Some(c)) => Some((c, None)),
        (None, None) => None,
    };
    if let Some((sha, also_code)) = digest {
        let only_code = q.sha256.is_none();
        let s = next(Bind::Text(sha.clone()), &mut binds);
        let role = if only_code { " AND role = 'code'" } else { "" };
        from = format!(
            "(SELECT DISTINCT job_seq FROM provenance_digests WHERE project_id = $1 AND sha256 = {s}{role}) m \
             JOIN job_provenance p ON p.job_seq = m.job_seq"
        );
        if let Some(code) = also_code {
            let c = next(Bind::Text(code.clone()), &mut binds);
            cond.push(format!(
                "EXISTS (SELECT 1 FROM provenance_digests c WHERE c.project_id = $1 AND c.sha256 = {c} \
                 AND c.job_seq = p.job_seq AND c.role = 'code')"
            ));
        }
    }
    if let Some(t) = &q.job_type {
        cond.push(format!(
            "p.job_type = {}",
            next(Bind::Text(t.clone()), &mut binds)
        ));
    }
    if let Some(s) = &q.site {
        cond.push(format!(
            "s.name = {}",
            next(Bind::Text(s.clone()), &mut binds)
        ));
    }
    if let Some(a) = q.ended_after {
        cond.push(format!("p.ended_at >= {}", next(Bind::Int(a), &mut binds)));
    }
    if let Some(b) = q.ended_before {
        cond.push(format!("p.ended_at < {}", next(Bind::Int(b), &mut binds)));
    }
    if let Some(c) = q.before_seq {
        cond.push(format!("p.job_seq < {}", next(Bind::Int(c), &mut binds)));
    }
    let limit = next(Bind::Int(i64::from(q.limit.max(1)) + 1), &mut binds);
    let sql = format!(
        "SELECT p.job_seq, j.id, s.name AS site, p.job_type, j.status, p.ended_at, p.agent_key \
         FROM {from} JOIN jobs j ON j.seq = p.job_seq JOIN sites s ON s.id = j.site_id \
         WHERE {} ORDER BY p.job_seq DESC LIMIT {limit}",
        cond.join(" AND ")
    );
    (sql, binds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_search_is_driven_by_the_digest_index() {
        let (sql, binds) = search_sql(&ProvenanceQuery {
            sha256: Some("a".repeat(64)),
            code_sha256: Some("b".repeat(64)),
            job_type: Some("t".into()),
            limit: 10,
            before_seq: Some(5),
            ..Default::default()
        });
        assert!(sql.contains("FROM (SELECT DISTINCT job_seq FROM provenance_digests WHERE project_id = $1 AND sha256 = $2)"), "{sql}");
        assert!(sql.contains("c.sha256 = $3"), "{sql}");
        assert!(sql.ends_with("LIMIT $6"), "{sql}");
        assert_eq!(binds.len(), 5);
        let (sql, _) = search_sql(&ProvenanceQuery {
            code_sha256: Some("b".repeat(64)),
            limit: 10,
            ..Default::default()
        });
        assert!(sql.contains("sha256 = $2 AND role = 'code')"), "{sql}");
    }
}
