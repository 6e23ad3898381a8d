//! Code bundles: the quarantine (download a pending bundle, compute its SHA-256 here,
//! report it; clean what is no longer pending) and preparation for a job (fetch the
//! approved bundle, check it against the approved digest, unpack it safely into
//! `<job>/code/<parameter>`).
//!
//! This module must never unpack or run a bundle from the quarantine: bytes there are
//! only hashed. Only an approved bundle whose bytes match its id is unpacked, and only
//! through [`crate::unpack`].

use super::agent::Agent;
use super::error::CodeError;
use super::job::Running;
use hpcsera_api_types::{is_code_id, ParamKind};
use hpcsera_client::CodeStatus;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the code quarantine is cleaned besides at start and after a verification.
const QUARANTINE_CLEAN_INTERVAL: Duration = Duration::from_secs(600);

impl Agent {
    fn quarantine_dir(&self) -> PathBuf {
        self.cfg.work_dir.join(".code").join("quarantine")
    }

    /// Verifies the bundles the server lists (once each), and cleans the quarantine after a
    /// verification or when it is due. True when a verification failed (the server keeps
    /// listing the bundle: the caller should pause rather than spin on it).
    pub(super) async fn verify_pending(&mut self, ids: &[String]) -> bool {
        let mut failed = false;
        for id in ids {
            if self.verified.contains(id) {
                continue;
            }
            match self.verify_code(id).await {
                Ok(()) => {
                    self.verified.insert(id.clone());
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(code = %id, error = %e, "cannot compute the HPC-side digest of a code bundle");
                }
            }
        }
        let verified_some = ids.iter().any(|id| self.verified.contains(id));
        let due = self
            .quarantine_cleaned
            .is_none_or(|t| t.elapsed() > QUARANTINE_CLEAN_INTERVAL);
        if verified_some || due {
            self.clean_quarantine().await;
        }
        failed
    }

    /// Downloads a pending code bundle into quarantine, computes its SHA-256 here and reports
    /// it. The bytes are never unpacked or run: they stay in `<work>/.code/quarantine`.
    async fn verify_code(&self, id: &str) -> Result<(), CodeError> {
        if !is_code_id(id) {
            return Err(CodeError::NotAnId(id.to_string()));
        }
        let dir = self.quarantine_dir();
        std::fs::create_dir_all(&dir).map_err(|source| CodeError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let part = dir.join(format!("{id}.{}.part", uuid::Uuid::new_v4().simple()));
        let max = self
            .cfg
            .limits
            .max_code_unpacked_bytes
            .min(self.cfg.limits.max_quarantine_bytes);
        let (size, sha) = match self.client.download_code(id, &part, max).await {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(CodeError::Download(e));
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            // Best effort: the umask (077) already made it 0600.
            let _ = std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600));
        }
        let kept = dir.join(id);
        if let Err(source) = std::fs::rename(&part, &kept) {
            let _ = std::fs::remove_file(&part);
            return Err(CodeError::Keep { path: kept, source });
        }
        self.client
            .report_hpc_digest(id, &sha)
            .await
            .map_err(CodeError::Report)?;
        tracing::info!(code = %id, size, hpc_sha256 = %sha, matches = (sha == id), "reported the HPC-side digest of a code bundle");
        Ok(())
    }

    /// Cleans `<work>/.code/quarantine`: removes leftovers of interrupted downloads, files
    /// that are not bundles, and bundles that are no longer pending (approved ones are fetched
    /// again for use; rejected or forgotten ones are never needed); then keeps at most
    /// `max_quarantine_bytes` of the rest, newest first. A bundle whose status cannot be read
    /// now is kept for the next time.
    pub(super) async fn clean_quarantine(&mut self) {
        self.quarantine_cleaned = Some(Instant::now());
        let dir = self.quarantine_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut kept = Vec::new();
        let mut removed = 0u64;
        for e in rd.flatten().take(10_000) {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let keep = if !m.is_file() || !is_code_id(&name) {
                false
            } else {
                match self.client.code_status(&name).await {
                    Ok(b) => b.status == CodeStatus::PendingApproval,
                    Err(e) if e.status() == Some(404) => false,
                    Err(_) => true,
                }
            };
            if keep {
                kept.push((m.modified().ok(), m.len(), path));
            } else if remove_any(&path) {
                removed += 1;
            }
        }
        // Newest first; the oldest go when the total is too large.
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        let mut total = 0u64;
        for (_, len, path) in kept {
            total += len;
            if total > self.cfg.limits.max_quarantine_bytes && remove_any(&path) {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, dir = %dir.display(), "cleaned the code quarantine");
        }
    }

    /// Fetches and unpacks the job's approved code bundles into `<job>/code/<parameter>`
    /// before its first sub-job: verified against the approved digest (the id), unpacked
    /// safely (see [`crate::unpack`]). Already unpacked code (a resumed job) is kept.
    pub(super) async fn prepare_code(
        &self,
        run: &Running,
    ) -> Result<Vec<(String, PathBuf)>, CodeError> {
        let mut out = Vec::new();
        for p in &run.jt.parameters {
            if p.kind != ParamKind::Code {
                continue;
            }
            let Some(id) = run.params.get(&p.name).and_then(Value::as_str) else {
                continue;
            };
            if !is_code_id(id) {
                return Err(CodeError::ParamNotAnId {
                    param: p.name.clone(),
                    id: id.to_string(),
                });
            }
            let target = run.ctx.job_dir.join("code").join(&p.name);
            if !target.is_dir() {
                self.unpack_bundle(run, &p.name, id, &target).await?;
            }
            out.push((p.name.clone(), target));
        }
        Ok(out)
    }

    /// Asks the server whether bundle `id` is approved (the server only hands out jobs whose
    /// code is approved; ask anyway before fetching anything for use), downloads it to
    /// `archive`, and checks its digest and, when the config requires one, its signed
    /// approval. Returns the digest; on any failure the archive is removed.
    async fn fetch_approved(
        &self,
        param: &str,
        id: &str,
        code_root: &Path,
        archive: &Path,
    ) -> Result<String, CodeError> {
        let (id_s, param_s) = (id.to_string(), param.to_string());
        let bundle = match self.client.code_status(id).await {
            Ok(b) if b.status == CodeStatus::Approved => b,
            Ok(b) => {
                return Err(CodeError::NotApproved {
                    id: id_s,
                    param: param_s,
                    status: b.status.to_string(),
                })
            }
            Err(source) => {
                return Err(CodeError::Check {
                    id: id_s,
                    param: param_s,
                    source,
                })
            }
        };
        std::fs::create_dir_all(code_root).map_err(|source| CodeError::CreateDir {
            path: code_root.to_path_buf(),
            source,
        })?;
        let max = self.cfg.limits.max_code_unpacked_bytes;
        let downloaded = self.client.download_code(id, archive, max).await;
        let sha = match downloaded {
            Ok((_, sha)) if sha == id => sha,
            other => {
                let _ = std::fs::remove_file(archive);
                return Err(match other {
                    Ok((_, sha)) => CodeError::Digest {
                        id: id_s,
                        param: param_s,
                        sha,
                    },
                    Err(source) => CodeError::Fetch {
                        id: id_s,
                        param: param_s,
                        source,
                    },
                });
            }
        };
        if let Err(reason) = self.check_signed_approval(&bundle, &sha) {
            let _ = std::fs::remove_file(archive);
            return Err(CodeError::Approval {
                id: id_s,
                param: param_s,
                reason,
            });
        }
        Ok(sha)
    }

    /// Checks that bundle `id` is approved, downloads it, compares its digest with the id,
    /// checks a signed approval when the config requires one (`approval.rs`), and unpacks it
    /// into `target`.
    async fn unpack_bundle(
        &self,
        run: &Running,
        param: &str,
        id: &str,
        target: &Path,
    ) -> Result<(), CodeError> {
        let (id_s, param_s) = (id.to_string(), param.to_string());
        let code_root = run.ctx.job_dir.join("code");
        let archive = code_root.join(format!(".{param}.tar.gz.part"));
        let sha = self.fetch_approved(param, id, &code_root, &archive).await?;
        let limits = crate::unpack::UnpackLimits {
            max_entries: self.cfg.limits.max_code_entries,
            max_bytes: self.cfg.limits.max_code_unpacked_bytes,
        };
        let (a, t) = (archive.clone(), target.to_path_buf());
        let unpacked =
            tokio::task::spawn_blocking(move || crate::unpack::unpack_tar_gz(&a, &t, &limits))
                .await;
        let _ = std::fs::remove_file(&archive);
        match unpacked {
            Ok(Ok(stats)) => {
                tracing::info!(job = %run.job.id, code = %sha, entries = stats.entries, bytes = stats.bytes, "unpacked code bundle");
                Ok(())
            }
            Ok(Err(source)) => Err(CodeError::Unpack {
                id: id_s,
                param: param_s,
                source,
            }),
            Err(source) => Err(CodeError::UnpackTask { id: id_s, source }),
        }
    }
}

/// `HPCSERA_CODE_<parameter>`: where a code parameter's bundle was unpacked.
pub(super) fn add_code_env(env: &mut Vec<(String, String)>, code: Option<&[(String, PathBuf)]>) {
    for (name, dir) in code.unwrap_or_default() {
        env.push((
            format!("HPCSERA_CODE_{name}"),
            dir.to_string_lossy().into_owned(),
        ));
    }
    env.sort();
}

/// Removes a file, link or directory tree (not following links); true when it is gone.
fn remove_any(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).is_ok(),
        Ok(_) => std::fs::remove_file(path).is_ok(),
        Err(_) => true,
    }
}
