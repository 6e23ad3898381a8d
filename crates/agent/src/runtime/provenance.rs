//! A job's signed provenance, made when the job ends: after its result files are uploaded
//! and before its end is reported, the agent gathers what the manifest says, builds it
//! ([`crate::provenance::manifest`]), signs its exact bytes with the agent's key and uploads
//! both (`PUT /job/{id}/provenance`). The server accepts it only from the agent that holds
//! the job and only before the job has ended, so this must come before the final report.
//!
//! What it gathers: the code bundles the job ran (uploader and approver from the server; the
//! agent checked their SHA-256 itself), the result files with the SHA-256 the server
//! confirmed, what the batch system reports about each batch sub-job and its version (both
//! through `batch::probe`), `module list` as recorded by the batch scripts, the container
//! image and its digest, and the job type's `provenance.commands`. Every text is bounded by
//! `[provenance] max_report_bytes`.
//!
//! Provenance never fails a job: when any of this goes wrong it is logged, and the job's end
//! is reported as it would be without it.

use super::agent::Agent;
use super::files::open_inside;
use super::job::{End, Running};
use crate::batch::probe::{Probe, ProbeLimits};
use crate::config::hex_lower;
use crate::provenance::manifest::{
    AgentFacts, CodeFacts, ContainerFacts, EndFacts, RunFacts, SubRun,
};
use crate::script::modules_file_path;
use hpcsera_api_types::{ParamKind, SubJobKind};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

impl Agent {
    /// Limits of every recorded command.
    fn probe_limits(&self) -> ProbeLimits {
        ProbeLimits {
            timeout: Duration::from_secs(self.cfg.provenance.command_timeout_seconds.max(1)),
            max_bytes: self.cfg.provenance.max_report_bytes,
        }
    }

    /// Builds, signs and uploads the manifest of a job that ends with `end` (see the module
    /// docs). Never fails the job.
    pub(super) async fn record_provenance(&mut self, run: &Running, end: &End) {
        let ended_ms = super::job::now_ms();
        if self.batch_version.is_none() {
            self.batch_version = Some(self.adapter.version(self.probe_limits()).await);
        }
        let code = self.code_facts(run).await;
        let sub_jobs = self.sub_runs(run, ended_ms).await;
        let container = self.container_facts(run).await;
        let mut commands = Vec::new();
        for c in &run.jt.provenance.commands {
            commands.push((c.name.clone(), self.probe_limits().run(&c.argv).await));
        }
        let facts = RunFacts {
            job: &run.job,
            job_type: &run.jt,
            params: &run.params,
            resources: &run.resources,
            server_url: &self.cfg.server_url,
            agent: AgentFacts {
                version: env!("CARGO_PKG_VERSION").to_string(),
                host: super::agent::host_name(),
                batch_system: self.adapter.name().to_string(),
                batch_version: self.batch_version.clone().flatten(),
            },
            end: EndFacts {
                status: end.status,
                exit_code: end.exit_code,
                message: end.message.clone(),
                started_ms: run.started_ms,
                ended_ms,
            },
            sub_jobs,
            code,
            results: run.uploaded.clone(),
            container,
            commands,
        };
        let bytes = crate::provenance::build(&facts);
        let signature = self.signer.sign(&bytes);
        let key = self.signer.public().to_string();
        match self
            .client
            .put_provenance(&run.job.id, &bytes, &signature, &key)
            .await
        {
            Ok(()) => {
                tracing::info!(job = %run.job.id, bytes = bytes.len(), "recorded signed provenance")
            }
            Err(e) => {
                tracing::warn!(job = %run.job.id, error = %e, "cannot record the job's provenance")
            }
        }
    }

    /// The code bundles the job ran, as the server describes them.
    async fn code_facts(&self, run: &Running) -> Vec<CodeFacts> {
        let Some(ran) = &run.code else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (param, _) in ran {
            let is_code = run
                .jt
                .parameters
                .iter()
                .any(|p| &p.name == param && p.kind == ParamKind::Code);
            let Some(id) = run.params.get(param).and_then(Value::as_str) else {
                continue;
            };
            if !is_code {
                continue;
            }
            match self.client.code_status(id).await {
                Ok(bundle) => out.push(CodeFacts {
                    param: param.clone(),
                    bundle,
                }),
                Err(e) => tracing::warn!(job = %run.job.id, code = %id, error = %e,
                    "cannot read the code bundle's record for the provenance"),
            }
        }
        out
    }

    /// Each sub-job with its times, the batch system's report and `module list`.
    async fn sub_runs<'a>(&self, run: &'a Running, job_end: i64) -> Vec<SubRun<'a>> {
        let mut out = Vec::new();
        for (i, state) in run.sub_states.iter().enumerate() {
            let kind = run.jt.sub_jobs.get(i).map_or(SubJobKind::Batch, |s| s.kind);
            let report = match &state.batch_job_id {
                Some(id) => self.adapter.report(id, self.probe_limits()).await,
                None => None,
            };
            let modules = (run.jt.provenance.record_modules && kind == SubJobKind::Batch)
                .then(|| self.modules(&run.ctx.job_dir, &state.name))
                .flatten();
            let (started_ms, ended_ms) = run.sub_times.get(i).copied().unwrap_or_default();
            // A sub-job the job's end cut short ended with it.
            let ended_ms = ended_ms.or(started_ms.map(|_| job_end));
            out.push(SubRun {
                state,
                kind,
                started_ms,
                ended_ms,
                report,
                modules,
            });
        }
        out
    }

    /// What the batch script of `sub` recorded of `module list` (no-follow, bounded).
    fn modules(&self, job_dir: &Path, sub: &str) -> Option<Probe> {
        use std::io::Read;
        let max = self.cfg.provenance.max_report_bytes;
        let path = modules_file_path(job_dir, sub);
        let mut data = Vec::new();
        let read =
            open_inside(job_dir, &path).and_then(|f| f.take(max as u64 + 1).read_to_end(&mut data));
        let mut p = Probe {
            argv: vec!["module".into(), "list".into()],
            output: String::new(),
            truncated: data.len() > max,
            exit_code: None,
            error: None,
        };
        match read {
            Ok(_) => {
                data.truncate(max);
                p.output = String::from_utf8_lossy(&data).into_owned();
                p.exit_code = Some(0);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                p.error = Some("the batch script recorded nothing (it did not end normally)".into())
            }
            Err(e) => p.error = Some(format!("not read: {e}")),
        }
        Some(p)
    }

    /// The job type's container image and its digest: configured, or the SHA-256 of its
    /// image file (remembered per file, size and modification time).
    async fn container_facts(&mut self, run: &Running) -> Option<ContainerFacts> {
        let c = run.jt.provenance.container.as_ref()?;
        let mut digest = c.digest.clone();
        if let (None, Some(file)) = (&digest, &c.file) {
            digest = self.image_digest(file).await;
        }
        Some(ContainerFacts {
            image: c.image.clone(),
            digest,
        })
    }

    async fn image_digest(&mut self, file: &Path) -> Option<String> {
        let meta = std::fs::metadata(file).ok()?;
        let stamp = (meta.len(), meta.modified().ok()?);
        if let Some((s, d)) = self.image_digests.get(file) {
            if *s == stamp {
                return Some(d.clone());
            }
        }
        let path = file.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || sha256_file(&path)).await;
        match hashed {
            Ok(Ok(hex)) => {
                let d = format!("sha256:{hex}");
                self.image_digests
                    .insert(file.to_path_buf(), (stamp, d.clone()));
                Some(d)
            }
            Ok(Err(e)) => {
                tracing::warn!(file = %file.display(), error = %e, "cannot hash the container image");
                None
            }
            Err(_) => None,
        }
    }
}

/// SHA-256 (hex) of a file, read in 1 MiB pieces.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex_lower(&h.finalize()))
}
