//! Code bundles: metadata of uploaded tar.gz bundles (the bytes live in files the server
//! keeps), the HPC-side digest, the out-of-band decision, and what it does to waiting jobs.

use crate::transition::{sql_status, LockedJob, TERMINAL};
use crate::{col, corrupt, fmt_ms, now_ms, Result, Store, StoreError};
use hpcsera_api_types::{CodeBundle, CodeStatus, FieldError, JobStatus, SignedApproval};
use sqlx::any::AnyRow;
use sqlx::Any;
use std::path::Path;

/// Columns of [`bundle_from_row`], by name.
const BUNDLE_SELECT: &str = "SELECT b.id, p.name AS project, b.size, b.status, u.name AS uploaded_by, b.created_at, b.hpc_sha256, \
     b.hpc_reported_at, b.decided_by, b.decided_at, b.reason, b.approval_message, b.approval_signature, b.approval_key \
     FROM code_bundles b JOIN projects p ON p.id = b.project_id JOIN users u ON u.id = b.uploaded_by";

fn bundle_from_row(r: &AnyRow) -> Result<CodeBundle> {
    let id: String = col(r, "id")?;
    let hpc: Option<String> = col(r, "hpc_sha256")?;
    Ok(CodeBundle {
        digests_match: hpc.as_deref() == Some(id.as_str()),
        project: col(r, "project")?,
        size: col(r, "size")?,
        status: col::<String>(r, "status")?.parse().map_err(corrupt)?,
        uploaded_by: col(r, "uploaded_by")?,
        created_at: fmt_ms(col(r, "created_at")?),
        hpc_sha256: hpc,
        hpc_reported_at: col::<Option<i64>>(r, "hpc_reported_at")?.map(fmt_ms),
        decided_by: col(r, "decided_by")?,
        decided_at: col::<Option<i64>>(r, "decided_at")?.map(fmt_ms),
        reason: col(r, "reason")?,
        approval: signed_approval(r)?,
        id,
    })
}

/// The signed approval of a bundle row, when its approval was signed.
fn signed_approval(r: &AnyRow) -> Result<Option<SignedApproval>> {
    let message: Option<String> = col(r, "approval_message")?;
    let signature: Option<String> = col(r, "approval_signature")?;
    Ok(match (message, signature) {
        (Some(message), Some(signature)) => Some(SignedApproval {
            message,
            signature,
            key_fingerprint: col(r, "approval_key")?,
        }),
        _ => None,
    })
}

/// What a decision on a bundle did.
#[derive(Debug, Clone)]
pub struct CodeDecision {
    pub bundle: CodeBundle,
    /// Jobs that waited for this bundle and are now queued (approval) or failed (rejection).
    pub jobs_changed: Vec<String>,
    /// No project kept these bytes when the decision committed: the file can go (retention:
    /// at once on rejection) — through `Store::delete_code_file_if_unkept`, which checks
    /// again, since an upload of the same bytes may have come in since.
    pub delete_file: bool,
}

/// First key of the advisory locks on code digests (PostgreSQL).
const CODE_LOCK_SPACE: i32 = 0x6863_6f64; // "hcod"

/// A code parameter of a job: `(parameter name, bundle id)`.
pub type CodeRef = (String, String);

impl Store {
    /// The id of a project by name.
    pub async fn project_id(&self, name: &str) -> Result<i64> {
        let r = sqlx::query("SELECT id FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("project"))?;
        col(&r, "id")
    }

    /// Records an uploaded bundle. Returns the bundle and whether it is new (the same bytes
    /// uploaded again to the same project give the same bundle).
    pub async fn create_bundle(
        &self,
        project_id: i64,
        id: &str,
        size: i64,
        user_id: i64,
    ) -> Result<(CodeBundle, bool)> {
        let mut tx = self.begin_write().await?;
        // Against a concurrent deletion of the same bytes (see `delete_code_file_if_unkept`):
        // the caller puts the file in place after this commits.
        self.lock_code_digest(&mut tx.tx, id).await?;
        let existing = sqlx::query("SELECT 1 FROM code_bundles WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&mut *tx.tx)
            .await?;
        let created = existing.is_none();
        if created {
            let r = sqlx::query(
                "INSERT INTO code_bundles (project_id, id, size, status, uploaded_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(project_id)
            .bind(id)
            .bind(size)
            .bind(CodeStatus::PendingApproval.as_str())
            .bind(user_id)
            .bind(now_ms())
            .execute(&mut *tx.tx)
            .await;
            if let Err(e) = r {
                let e = StoreError::from(e);
                if !e.is_unique_violation() {
                    return Err(e);
                }
                // A concurrent upload of the same bytes won: that is the same bundle.
                drop(tx);
                return Ok((self.get_bundle(project_id, id).await?, false));
            }
        }
        tx.commit().await?;
        Ok((self.get_bundle(project_id, id).await?, created))
    }

    /// Serialises, per digest, the insert of a bundle row and the deletion of its file:
    /// PostgreSQL takes a transaction-scoped advisory lock (SQLite's write transactions are
    /// serialised already).
    async fn lock_code_digest(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        id: &str,
    ) -> Result<()> {
        if self.backend() == crate::Backend::Postgres {
            // The two-key advisory lock space is separate from the one-key locks used elsewhere.
            let key = i64::from_str_radix(id.get(..8).unwrap_or("0"), 16).unwrap_or(0) as i32;
            sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                .bind(CODE_LOCK_SPACE)
                .bind(key)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Deletes the file of bundle `id` at `path` unless a project keeps those bytes (a bundle
    /// row that is not rejected). The check and the deletion happen under the digest's lock,
    /// inside one write transaction, so an upload of the same bytes either commits first (and
    /// the file stays) or commits after the deletion and then puts its file in place. Returns
    /// whether the file was deleted (or already gone).
    pub async fn delete_code_file_if_unkept(&self, id: &str, path: &Path) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        self.lock_code_digest(&mut tx.tx, id).await?;
        let r =
            sqlx::query("SELECT COUNT(*) FROM code_bundles WHERE id = $1 AND status <> 'rejected'")
                .bind(id)
                .fetch_one(&mut *tx.tx)
                .await?;
        if col::<i64>(&r, 0)? > 0 {
            return Ok(false);
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                // The bytes stay (retention only); nothing is lost.
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a code bundle file");
                return Ok(false);
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A bundle of the project.
    pub async fn get_bundle(&self, project_id: i64, id: &str) -> Result<CodeBundle> {
        let r = sqlx::query(&format!(
            "{BUNDLE_SELECT} WHERE b.project_id = $1 AND b.id = $2"
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("code bundle"))?;
        bundle_from_row(&r)
    }

    /// The project's bundles, newest first (at most 1000).
    pub async fn list_bundles(&self, project_id: i64) -> Result<Vec<CodeBundle>> {
        let rows = sqlx::query(&format!(
            "{BUNDLE_SELECT} WHERE b.project_id = $1 ORDER BY b.created_at DESC, b.id LIMIT 1000"
        ))
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bundle_from_row).collect()
    }

    /// Whether a job of `site` in the project waits for this (pending) bundle: only then may
    /// the site's agent download it before approval (to compute its digest).
    pub async fn bundle_awaited_at_site(
        &self,
        project_id: i64,
        id: &str,
        site: &str,
    ) -> Result<bool> {
        let r = sqlx::query(&format!(
            "SELECT 1 FROM job_code c JOIN jobs j ON j.seq = c.job_seq JOIN sites s ON s.id = j.site_id \
             WHERE c.project_id = $1 AND c.code_id = $2 AND s.name = $3 AND j.status = {awaiting} \
             AND j.deleted_at IS NULL LIMIT 1",
            awaiting = sql_status(JobStatus::AwaitingApproval)
        )        )
        .bind(project_id)
        .bind(id)
        .bind(site)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.is_some())
    }

    /// Pending bundles without an HPC-side digest that waiting jobs of `site` reference.
    pub async fn code_to_verify(&self, project_id: i64, site: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT b.id FROM code_bundles b \
             JOIN job_code c ON c.project_id = b.project_id AND c.code_id = b.id \
             JOIN jobs j ON j.seq = c.job_seq JOIN sites s ON s.id = j.site_id \
             WHERE b.project_id = $1 AND s.name = $2 AND b.status = 'pending_approval' \
             AND b.hpc_sha256 IS NULL AND j.status = {awaiting} AND j.deleted_at IS NULL \
             ORDER BY b.id LIMIT 100",
            awaiting = sql_status(JobStatus::AwaitingApproval)
        ))
        .bind(project_id)
        .bind(site)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| col(r, 0)).collect()
    }

    /// The agent's report of the digest it computed. Only while the bundle is pending: a
    /// decided bundle keeps the digest its decision was made on.
    pub async fn report_hpc_digest(
        &self,
        project_id: i64,
        id: &str,
        sha256: &str,
        actor: &str,
    ) -> Result<CodeBundle> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(&format!(
            "SELECT status FROM code_bundles WHERE project_id = $1 AND id = $2{}",
            self.for_update()
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await?
        .ok_or(StoreError::NotFound("code bundle"))?;
        let status: CodeStatus = col::<String>(&r, 0)?.parse().map_err(corrupt)?;
        if status != CodeStatus::PendingApproval {
            return Err(StoreError::Conflict(format!(
                "the code bundle is {status}; its digest can no longer change"
            )));
        }
        sqlx::query(
            "UPDATE code_bundles SET hpc_sha256 = $1, hpc_reported_at = $2, hpc_reported_by = $3 \
             WHERE project_id = $4 AND id = $5",
        )
        .bind(sha256)
        .bind(now_ms())
        .bind(actor)
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        self.get_bundle(project_id, id).await
    }

    /// Approves or rejects a bundle: only a person who is a member of the project decides
    /// (there is no token path to this). Approval binds the exact digest: it is refused until
    /// the site's agent has reported a digest equal to the id. Waiting jobs whose bundles are
    /// now all approved become `queued`; on rejection they fail with the reason.
    pub async fn decide_bundle(
        &self,
        project: &str,
        id: &str,
        user: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<CodeDecision> {
        self.decide(project, id, user, approve, reason, None).await
    }

    /// [`Store::decide_bundle`], keeping a signed approval with the decision (see
    /// `Store::approve_bundle_signed`).
    pub(crate) async fn decide(
        &self,
        project: &str,
        id: &str,
        user: &str,
        approve: bool,
        reason: Option<&str>,
        signed: Option<&SignedApproval>,
    ) -> Result<CodeDecision> {
        let mut tx = self.begin_write().await?;
        let project_id = self.member_project(&mut tx.tx, project, user).await?;
        self.lock_decidable(&mut tx.tx, project_id, id, approve)
            .await?;
        let to = if approve {
            CodeStatus::Approved
        } else {
            CodeStatus::Rejected
        };
        sqlx::query(
            "UPDATE code_bundles SET status = $1, decided_by = $2, decided_at = $3, reason = $4, \
             approval_message = $5, approval_signature = $6, approval_key = $7 \
             WHERE project_id = $8 AND id = $9",
        )
        .bind(to.as_str())
        .bind(user)
        .bind(now_ms())
        .bind(reason)
        .bind(signed.map(|s| s.message.as_str()))
        .bind(signed.map(|s| s.signature.as_str()))
        .bind(signed.and_then(|s| s.key_fingerprint.as_deref()))
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx.tx)
        .await?;
        let jobs_changed = self
            .decide_waiting_jobs(&mut tx.tx, project_id, id, approve, reason, user)
            .await?;
        let delete_file = if approve {
            false
        } else {
            let r = sqlx::query(
                "SELECT COUNT(*) FROM code_bundles WHERE id = $1 AND status <> 'rejected'",
            )
            .bind(id)
            .fetch_one(&mut *tx.tx)
            .await?;
            col::<i64>(&r, 0)? == 0
        };
        tx.commit().await?;
        Ok(CodeDecision {
            bundle: self.get_bundle(project_id, id).await?,
            jobs_changed,
            delete_file,
        })
    }

    /// The id of `project` when `user` is a member of it (who may decide on its code).
    async fn member_project(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project: &str,
        user: &str,
    ) -> Result<i64> {
        let r = sqlx::query(
            "SELECT p.id FROM projects p JOIN memberships m ON m.project_id = p.id \
             JOIN users u ON u.id = m.user_id WHERE p.name = $1 AND u.name = $2",
        )
        .bind(project)
        .bind(user)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            StoreError::Invalid(vec![FieldError::new(
                "user",
                format!("{user:?} is not a member of project {project:?}"),
            )])
        })?;
        col(&r, 0)
    }

    /// Locks a bundle that waits for a decision; an approval also needs the HPC-side digest,
    /// equal to the id (approval binds the digest computed on the cluster).
    async fn lock_decidable(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        id: &str,
        approve: bool,
    ) -> Result<()> {
        let r = sqlx::query(&format!(
            "SELECT status, hpc_sha256 FROM code_bundles WHERE project_id = $1 AND id = $2{}",
            self.for_update()
        ))
        .bind(project_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("code bundle"))?;
        let status: CodeStatus = col::<String>(&r, "status")?.parse().map_err(corrupt)?;
        let hpc: Option<String> = col(&r, "hpc_sha256")?;
        if status != CodeStatus::PendingApproval {
            return Err(StoreError::Conflict(format!(
                "the code bundle is already {status}"
            )));
        }
        match hpc.as_deref() {
            _ if !approve => Ok(()),
            None => Err(StoreError::Conflict(
                "the site's agent has not reported its digest of this bundle yet; \
                 approval binds the digest computed on the HPC side"
                    .into(),
            )),
            Some(h) if h != id => Err(StoreError::Conflict(format!(
                "the HPC-side digest {h} differs from the uploaded digest {id}; refusing to approve"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// After a decision on bundle `id`: waiting jobs whose bundles are now all approved become
    /// `queued`; on a rejection every job waiting for it fails. Returns the ids of the jobs
    /// that changed.
    async fn decide_waiting_jobs(
        &self,
        tx: &mut sqlx::Transaction<'static, Any>,
        project_id: i64,
        id: &str,
        approve: bool,
        reason: Option<&str>,
        user: &str,
    ) -> Result<Vec<String>> {
        let actor = format!("user:{user}");
        let waiting = sqlx::query(&format!(
            "SELECT j.seq, j.id FROM jobs j WHERE j.status = {awaiting} AND j.seq IN \
             (SELECT c.job_seq FROM job_code c WHERE c.project_id = $1 AND c.code_id = $2) ORDER BY j.seq{}",
            self.for_update(),
            awaiting = sql_status(JobStatus::AwaitingApproval),
        ))
        .bind(project_id)
        .bind(id)
        .fetch_all(&mut **tx)
        .await?;
        let mut changed = Vec::new();
        for w in &waiting {
            let seq: i64 = col(w, "seq")?;
            let (to, message) = if approve {
                let r = sqlx::query(
                    "SELECT COUNT(*) FROM job_code c JOIN code_bundles b \
                     ON b.project_id = c.project_id AND b.id = c.code_id \
                     WHERE c.job_seq = $1 AND b.status <> 'approved'",
                )
                .bind(seq)
                .fetch_one(&mut **tx)
                .await?;
                if col::<i64>(&r, 0)? > 0 {
                    continue;
                }
                (JobStatus::Queued, format!("code bundle {id} approved"))
            } else {
                let why = reason.unwrap_or("no reason given");
                (
                    JobStatus::Failed,
                    format!("code bundle {id} rejected: {why}"),
                )
            };
            let job = LockedJob {
                seq,
                project_id,
                status: JobStatus::AwaitingApproval,
            };
            self.transition(tx, &job, to, &actor, Some(&message))
                .await?;
            changed.push(col(w, "id")?);
        }
        Ok(changed)
    }

    /// Retention: forgets bundles (pending or approved) uploaded before `before_ms` that no
    /// job still waiting or running references. Returns the digests whose bytes no project
    /// keeps any more (the caller deletes those files). Rejected rows stay (their files are
    /// gone already), so re-uploading rejected bytes does not revive them.
    pub async fn prune_bundles(&self, before_ms: i64) -> Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&format!(
            "SELECT b.project_id, b.id FROM code_bundles b WHERE b.status <> 'rejected' \
             AND b.created_at < $1 AND NOT EXISTS (SELECT 1 FROM job_code c JOIN jobs j ON j.seq = c.job_seq \
             WHERE c.project_id = b.project_id AND c.code_id = b.id \
             AND j.status NOT IN {terminal}) LIMIT 10000",
            terminal = TERMINAL.as_str()
        ))
        .bind(before_ms)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut ids = Vec::new();
        for r in &rows {
            let project_id: i64 = col(r, "project_id")?;
            let id: String = col(r, "id")?;
            sqlx::query("DELETE FROM code_bundles WHERE project_id = $1 AND id = $2")
                .bind(project_id)
                .bind(id.as_str())
                .execute(&mut *tx.tx)
                .await?;
            ids.push(id);
        }
        ids.sort();
        ids.dedup();
        let mut gone = Vec::new();
        for id in ids {
            let r = sqlx::query(
                "SELECT COUNT(*) FROM code_bundles WHERE id = $1 AND status <> 'rejected'",
            )
            .bind(id.as_str())
            .fetch_one(&mut *tx.tx)
            .await?;
            if col::<i64>(&r, 0)? == 0 {
                gone.push(id);
            }
        }
        tx.commit().await?;
        Ok(gone)
    }
}
