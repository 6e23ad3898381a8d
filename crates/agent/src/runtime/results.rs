//! The end of a job: last output, result files (the regular files below `<job>/results`),
//! the final report, and forgetting the job in the journal.
//!
//! Result files are read only through [`super::files::read_inside`]: nothing is read
//! through a symlink or from outside the job directory. This module must never forget a
//! job in the journal before the server has its end.

use super::agent::Agent;
use super::files::read_inside;
use super::job::{fit, End, Running};
use hpcsera_api_types::{is_valid_result_name, JobUpdate};
use std::path::{Path, PathBuf};

/// Most result files uploaded per job.
const MAX_RESULT_FILES: usize = 1000;
/// Deepest directory level below `results` that is read.
const MAX_RESULT_DEPTH: usize = 16;
/// Most skipped links named in the end message.
const MAX_SKIPPED_NAMED: usize = 20;

impl Agent {
    /// Ends a job: last output, result files, final report, journal.
    pub(super) async fn finish(&mut self, run: &mut Running, end: End) {
        self.drain_output(run).await;
        self.upload_results(run).await;
        let mut end = end;
        if !run.skipped.is_empty() {
            end.message = format!(
                "{}; not read (links out of the job directory): {}",
                end.message,
                run.skipped.join(", ")
            );
        }
        // Before the end: the server takes the manifest only while the job has not ended.
        self.record_provenance(run, &end).await;
        let update = JobUpdate {
            status: Some(end.status),
            exit_code: end.exit_code,
            message: Some(fit(&end.message)),
            sub_jobs: Some(run.sub_states.clone()),
            ..Default::default()
        };
        match self.client.update_job(&run.job.id, &update).await {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) || e.status() == Some(404) => {
                tracing::info!(job = %run.job.id, error = %e, "the server already has an end for this job")
            }
            Err(e) => {
                // Keep it journaled; the next start reports again.
                tracing::warn!(job = %run.job.id, error = %e, "cannot report the end of the job");
                return;
            }
        }
        tracing::info!(job = %run.job.id, status = %end.status, exit_code = end.exit_code, "finished");
        if let Err(e) = self.journal.forget(&run.job.id) {
            // Not fatal: the server has the end, so the next start sees the job ended and
            // forgets it then.
            tracing::warn!(job = %run.job.id, error = %e, "cannot clean the journal");
        }
    }

    /// Uploads the regular files below `<job>/results`. Nothing is read through a symlink or
    /// from outside the job directory: links are skipped (and named in the job's message).
    async fn upload_results(&self, run: &mut Running) {
        let dir = run.ctx.job_dir.join("results");
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => skipped.push("results".to_string()),
            Ok(m) if m.is_dir() => collect_files(&dir, &dir, &mut files, &mut skipped, 0),
            _ => {}
        }
        for name in skipped {
            tracing::warn!(job = %run.job.id, file = %name, "a symlink in the results; not followed");
            run.skipped.push(format!("{name} (a symlink)"));
        }
        for (name, path) in files {
            if !is_valid_result_name(&name) {
                tracing::warn!(job = %run.job.id, file = %name, "result file name not accepted; skipped");
                continue;
            }
            self.upload_result(run, &name, path).await;
        }
    }

    /// Reads one result file (no-follow, bounded) and uploads it.
    async fn upload_result(&self, run: &mut Running, name: &str, path: PathBuf) {
        let max = self.cfg.limits.max_result_bytes;
        let root = run.ctx.job_dir.clone();
        let read = tokio::task::spawn_blocking(move || read_inside(&root, &path, max)).await;
        match read {
            Ok(Ok(Some(data))) => match self.client.put_result(&run.job.id, name, &data).await {
                Ok(file) => run.uploaded.push(file),
                Err(e) => {
                    tracing::warn!(job = %run.job.id, file = %name, error = %e, "cannot upload result file")
                }
            },
            Ok(Ok(None)) => {
                tracing::warn!(job = %run.job.id, file = %name, max, "result file too large; skipped");
            }
            Ok(Err(e)) => {
                tracing::warn!(job = %run.job.id, file = %name, error = %e, "result file not read");
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(libc::ELOOP)
                {
                    run.skipped.push(format!("results/{name} ({e})"));
                }
            }
            Err(e) => {
                tracing::warn!(job = %run.job.id, file = %name, error = %e, "cannot read result file")
            }
        }
    }
}

/// Regular files below `dir` (symlinks are not followed: their names go to `skipped`), as
/// (relative name, path).
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
    skipped: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_RESULT_DEPTH || out.len() > MAX_RESULT_FILES {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        let rel = || {
            path.strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned())
                .ok()
        };
        if ft.is_symlink() {
            if skipped.len() < MAX_SKIPPED_NAMED {
                if let Some(rel) = rel() {
                    skipped.push(format!("results/{rel}"));
                }
            }
        } else if ft.is_dir() {
            collect_files(root, &path, out, skipped, depth + 1);
        } else if ft.is_file() {
            if let Some(rel) = rel() {
                out.push((rel, path.clone()));
            }
        }
    }
}
