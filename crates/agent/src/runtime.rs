//! The agent's main loop: poll the server, run the jobs it hands over through their
//! sub-jobs, watch the batch system, report back.
//!
//! One cycle:
//!
//! 1. `POST /agent/poll` with the ids of the jobs held (renews their leases), taking up to
//!    `max_active_jobs - held` new jobs; it waits on the server (long-poll) for
//!    `long_poll_seconds` when the agent is idle, and `status_interval_seconds` otherwise.
//! 2. Jobs the server says the agent no longer holds are dropped (their batch job cancelled).
//! 3. Operations (cancel, hold, release) are carried out and acknowledged.
//! 4. New jobs: parameters are validated again against the agent's own config (the authority),
//!    recorded in the journal, and the claim confirmed to the server **before** anything runs;
//!    a claim the agent never confirmed is offered again by the server, which is safe because
//!    nothing has run.
//! 5. Every job advances: login sub-jobs run as child processes with a timeout; batch sub-jobs
//!    are rendered, journaled (intent), submitted, journaled (batch id); the states of **all**
//!    batch jobs come from one `status_all` call; output files are streamed to the server by
//!    offset; finished jobs upload their result files and report their end.
//!
//! Restart safety: the journal knows every accepted job and each sub-job's phase. On start the
//! agent resolves pending submissions against the batch system (by job name), re-reads each
//! journaled job from the server and resumes it where it was; nothing is submitted twice.

use crate::batch::login::{run_login, LoginError, LoginOutcome, LoginRequest};
use crate::batch::{BatchAdapter, BatchJobRef, BatchState, SubmitRequest};
use crate::config::{AgentConfig, JobTypeConfig, SubJobConfig};
use crate::env::{batch_env, batch_job_name, job_dir, job_env, JobContext};
use crate::journal::{Journal, Phase};
use crate::script::render_batch_script;
use hpcsera_api_types::{
    is_valid_result_name, AgentPoll, Job, JobStatus, JobUpdate, Operation, OperationDone,
    OutputStream, PublishJobTypes, SubJobKind, SubJobState,
};
use hpcsera_client::{Client, ClientError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest message the agent reports (the server's smallest limit: `operationDone` messages;
/// status messages may have 64 KiB). Longer ones are cut, so no report is refused for its size.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// After this many status queries in a row that do not know a batch job, it is given up.
const UNKNOWN_LIMIT: u32 = 3;
/// How often the code quarantine is cleaned besides at start and after a verification.
const QUARANTINE_CLEAN_INTERVAL: Duration = Duration::from_secs(600);
/// Most output bytes sent per stream and cycle.
const OUTPUT_CHUNK: u64 = 1024 * 1024;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error(
        "another agent is running with work directory {0} (lock file {0}/.hpcsera-agent.lock)"
    )]
    Locked(PathBuf),
    #[error("cannot talk to the server: {0}")]
    Server(#[from] ClientError),
    #[error("journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error("batch system: {0}")]
    Batch(#[from] crate::batch::BatchError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a job is in its sub-jobs.
enum Step {
    /// Sub-job `index` is next.
    Start,
    Login(JoinHandle<Result<LoginOutcome, LoginError>>),
    Batch {
        batch: BatchJobRef,
        unknown: u32,
    },
}

/// One output stream of a job: the concatenation of its sub-jobs' files.
#[derive(Default)]
struct Stream {
    /// Bytes the server has.
    server_len: u64,
    /// Files in sub-job order and how much of each was sent.
    files: Vec<(PathBuf, u64)>,
    truncated: bool,
    /// Files not read because they are links out of the job directory (by index).
    refused: std::collections::HashSet<usize>,
}

struct Running {
    job: Job,
    jt: JobTypeConfig,
    params: Map<String, Value>,
    ctx: JobContext,
    index: usize,
    step: Step,
    reported: JobStatus,
    sub_states: Vec<SubJobState>,
    out: Stream,
    err: Stream,
    /// Unpacked code bundles: `(parameter, directory)`; filled before the first sub-job.
    code: Option<Vec<(String, PathBuf)>>,
    /// What the agent refused to read (links out of the job directory), for the end message.
    skipped: Vec<String>,
}

impl Running {
    fn sub(&self) -> Option<&SubJobConfig> {
        self.jt.sub_jobs.get(self.index)
    }
}

/// How the job ended.
struct End {
    status: JobStatus,
    exit_code: Option<i32>,
    message: String,
}

/// The agent.
pub struct Agent {
    cfg: AgentConfig,
    client: Client,
    adapter: Arc<dyn BatchAdapter>,
    journal: Journal,
    jobs: HashMap<String, Running>,
    /// Code bundles whose digest this agent has reported (not reported again).
    verified: std::collections::HashSet<String>,
    /// When the quarantine was last cleaned.
    quarantine_cleaned: Option<std::time::Instant>,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("site", &self.cfg.site)
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Io { context, source }
}

/// This machine's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Agent {
    /// Sets the agent up: lock file, journal, batch adapter, client. Fails when another agent
    /// holds the work directory.
    ///
    /// Sets the process's umask to 077: everything the agent creates (work and job
    /// directories, journal, scripts, output, results, code) is 0700/0600, and so is what the
    /// processes it starts create (batch systems pass the submitter's umask on to the job).
    pub fn new(cfg: AgentConfig, token: &str) -> Result<Agent, AgentError> {
        // SAFETY: umask only sets the process's file mode mask; it cannot fail.
        unsafe { libc::umask(0o077) };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&cfg.work_dir)
                .map_err(io(format!(
                    "cannot create the work directory {}",
                    cfg.work_dir.display()
                )))?;
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&cfg.work_dir) {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(work_dir = %cfg.work_dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o7777),
                        "the work directory is open to group or others; consider chmod 700");
                }
            }
        }
        let lock_path = cfg.work_dir.join(".hpcsera-agent.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("cannot open {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AgentError::Locked(cfg.work_dir.clone()))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(format!("cannot lock {}", lock_path.display()))(e))
            }
        }
        let journal = Journal::open(cfg.work_dir.join(".journal"))?;
        let adapter =
            crate::batch::adapter_from_config(&cfg.batch, cfg.work_dir.join(".local-batch"))?;
        let wait = cfg
            .poll
            .long_poll_seconds
            .max(cfg.poll.status_interval_seconds);
        let client = Client::with_timeouts(
            &cfg.server_url,
            token,
            Duration::from_secs(10),
            Duration::from_secs(wait + 30),
        )?;
        Ok(Agent {
            cfg,
            client,
            adapter,
            journal,
            jobs: HashMap::new(),
            verified: Default::default(),
            quarantine_cleaned: None,
            _lock: lock,
        })
    }

    /// The batch adapter (tests count its commands).
    pub fn adapter(&self) -> &Arc<dyn BatchAdapter> {
        &self.adapter
    }

    /// Publishes the job types and resumes journaled jobs. Call once before cycles.
    pub async fn start(&mut self) -> Result<(), AgentError> {
        self.client
            .publish_job_types(
                &self.cfg.site,
                &PublishJobTypes {
                    agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                    agent_host: Some(host_name()),
                    job_types: self.cfg.specs(),
                },
            )
            .await?;
        tracing::info!(site = %self.cfg.site, job_types = self.cfg.job_types.len(), adapter = self.adapter.name(),
            "published job types");
        self.resume().await?;
        self.clean_quarantine().await;
        Ok(())
    }

    /// Picks up where a previous run left off.
    async fn resume(&mut self) -> Result<(), AgentError> {
        let rec = self.journal.reconcile(self.adapter.as_ref()).await?;
        if !rec.adopted.is_empty() || !rec.not_submitted.is_empty() || !rec.finished.is_empty() {
            tracing::info!(
                adopted = rec.adopted.len(),
                finished = rec.finished.len(),
                not_submitted = rec.not_submitted.len(),
                "reconciled the journal with the batch system"
            );
        }
        for record in self.journal.jobs()? {
            let job = match self.client.get_job(&record.job_id).await {
                Ok(j) => j,
                Err(e) if e.status() == Some(404) => {
                    self.journal.forget(&record.job_id)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if job.status == JobStatus::Lost {
                // The server gave up on the job while the agent was away: its batch jobs
                // must not run on unseen.
                let mut done = Vec::new();
                for (sub, s) in &record.sub_jobs {
                    if s.phase != Phase::Submitted {
                        continue;
                    }
                    let Some(batch) = &s.batch_id else { continue };
                    done.push(match self.adapter.cancel(batch).await {
                        Ok(()) => format!("cancelled batch job {batch} (sub-job {sub})"),
                        Err(e) => format!("cannot cancel batch job {batch} (sub-job {sub}): {e}"),
                    });
                }
                self.cleaned_up(&record.job_id, done).await;
                self.journal.forget(&record.job_id)?;
                continue;
            }
            if job.status.is_terminal() || !job.status.is_with_agent() {
                self.journal.forget(&record.job_id)?;
                continue;
            }
            let mut run = match self.prepare(&job) {
                Ok(r) => r,
                Err(message) => {
                    self.refuse(&job, message).await;
                    self.journal.forget(&record.job_id)?;
                    continue;
                }
            };
            // Skip the sub-jobs that are done; resume a submitted batch job; rerun the rest
            // (a login sub-job cut short by the restart runs again).
            let mut failed_before = None;
            for (i, sub) in run.jt.sub_jobs.iter().enumerate() {
                run.index = i;
                match record.sub_jobs.get(&sub.name) {
                    Some(s) if s.phase == Phase::Done && s.exit_code == Some(0) => {
                        run.index = i + 1;
                    }
                    Some(s) if s.phase == Phase::Done => {
                        failed_before = Some(End {
                            status: JobStatus::Failed,
                            exit_code: s.exit_code,
                            message: format!(
                                "sub-job {} {} (while the agent was down)",
                                sub.name,
                                s.outcome.as_deref().unwrap_or("failed")
                            ),
                        });
                        break;
                    }
                    Some(s) if s.phase == Phase::Submitted => {
                        if let Some(id) = &s.batch_id {
                            run.step = Step::Batch {
                                batch: BatchJobRef::new(id.clone(), s.exit_file.clone()),
                                unknown: 0,
                            };
                        }
                        break;
                    }
                    _ => break,
                }
            }
            for sub in run.jt.sub_jobs.iter().take(run.index + 1) {
                let (o, e) = output_files(&run.ctx.job_dir, &sub.name);
                run.out.files.push((o, 0));
                run.err.files.push((e, 0));
            }
            // The server has what we sent before (the job says how much, readable with
            // GET_Job): continue from there, at the matching file positions.
            run.out.server_len = job.output_bytes.stdout;
            run.err.server_len = job.output_bytes.stderr;
            skip_sent(&mut run.out);
            skip_sent(&mut run.err);
            tracing::info!(job = %run.job.id, sub_job = run.index, "resumed a job from the journal");
            if let Some(end) = failed_before {
                self.finish(&mut run, end).await;
                continue;
            }
            self.jobs.insert(run.job.id.clone(), run);
        }
        Ok(())
    }

    /// Builds the running state of a job the server handed over, after checking it against
    /// the agent's own config.
    fn prepare(&self, job: &Job) -> Result<Running, String> {
        let Some(jt) = self.cfg.job_type(&job.job_type).cloned() else {
            let m = format!("this agent has no job type {:?}", job.job_type);
            return Err(m);
        };
        let params = match jt.validate_parameters(&job.parameters) {
            Ok(p) => p,
            Err(errs) => {
                let m = errs
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.problem))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(format!("the agent refused the parameters: {m}"));
            }
        };
        let dir = match job_dir(&self.cfg.work_dir, &job.id) {
            Ok(d) => d,
            Err(e) => return Err(e.to_string()),
        };
        let ctx = JobContext {
            job_id: job.id.clone(),
            job_type: job.job_type.clone(),
            site: self.cfg.site.clone(),
            job_dir: dir,
        };
        let sub_states = jt
            .sub_jobs
            .iter()
            .map(|s| SubJobState {
                name: s.name.clone(),
                status: "pending".into(),
                batch_job_id: None,
                exit_code: None,
                message: None,
            })
            .collect();
        Ok(Running {
            reported: job.status,
            job: job.clone(),
            jt,
            params,
            ctx,
            index: 0,
            step: Step::Start,
            sub_states,
            out: Stream::default(),
            err: Stream::default(),
            code: None,
            skipped: Vec::new(),
        })
    }

    /// Runs cycles until `shutdown` resolves. Jobs in the batch system keep running; the
    /// journal lets the next start pick them up.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        loop {
            // Idle: wait long on the server. Login steps running: look again soon (they end on
            // the login node, not in the batch system). Batch jobs: the status interval.
            let login_running = self.jobs.values().any(|r| matches!(r.step, Step::Login(_)));
            let wait = if self.jobs.is_empty() {
                self.cfg.poll.long_poll_seconds
            } else if login_running {
                1
            } else {
                self.cfg
                    .poll
                    .status_interval_seconds
                    .min(self.cfg.poll.long_poll_seconds)
            };
            tokio::select! {
                _ = &mut shutdown => {
                    tracing::info!(jobs = self.jobs.len(), "stopping; jobs in the batch system go on and are resumed at the next start");
                    return Ok(());
                }
                r = self.cycle(wait as u32, false) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "cycle failed; trying again");
                        tokio::time::sleep(Duration::from_secs(self.cfg.poll.idle_interval_seconds.max(1))).await;
                    }
                }
            }
        }
    }

    /// One cycle without waiting on the server (`--once`, for cron); login sub-jobs it starts
    /// are awaited, since the process ends after the cycle.
    pub async fn once(&mut self) -> Result<(), AgentError> {
        self.cycle(0, true).await
    }

    /// One cycle (see the module docs).
    pub async fn cycle(&mut self, wait_seconds: u32, finish_login: bool) -> Result<(), AgentError> {
        let active: Vec<String> = self.jobs.keys().cloned().collect();
        let room = self
            .cfg
            .limits
            .max_active_jobs
            .saturating_sub(self.jobs.len()) as u32;
        let reply = self
            .client
            .agent_poll(&AgentPoll {
                active_job_ids: active,
                max_jobs: room,
                wait_seconds,
                agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            })
            .await?;
        for id in &reply.released_job_ids {
            if let Some(run) = self.jobs.remove(id) {
                tracing::warn!(job = %id, "the server no longer gives this job to us; stopping it");
                let stopped = self.stop_step(&run).await;
                let done = match (&run.step, stopped) {
                    (Step::Batch { batch, .. }, Ok(())) => {
                        vec![format!("cancelled batch job {}", batch.id)]
                    }
                    (Step::Batch { batch, .. }, Err(e)) => {
                        vec![format!("cannot cancel batch job {}: {e}", batch.id)]
                    }
                    (Step::Login(_), _) => vec!["stopped its login sub-job".to_string()],
                    (Step::Start, _) => Vec::new(),
                };
                self.cleaned_up(id, done).await;
                self.journal.forget(id)?;
            }
        }
        for op in &reply.operations {
            self.operation(&op.job_id, op.operation).await;
        }
        let mut verify_failed = false;
        for id in &reply.code_to_verify {
            if self.verified.contains(id) {
                continue;
            }
            match self.verify_code(id).await {
                Ok(()) => {
                    self.verified.insert(id.clone());
                }
                Err(e) => {
                    verify_failed = true;
                    tracing::warn!(code = %id, error = %e, "cannot compute the HPC-side digest of a code bundle");
                }
            }
        }
        let verified_some = reply
            .code_to_verify
            .iter()
            .any(|id| self.verified.contains(id));
        if verified_some
            || self
                .quarantine_cleaned
                .is_none_or(|t| t.elapsed() > QUARANTINE_CLEAN_INTERVAL)
        {
            self.clean_quarantine().await;
        }
        if verify_failed {
            // The server keeps listing the bundle: do not spin on it.
            tokio::time::sleep(Duration::from_secs(
                self.cfg.poll.idle_interval_seconds.max(1),
            ))
            .await;
        }
        for job in reply.jobs {
            self.accept(job).await;
        }
        self.advance(finish_login).await;
        Ok(())
    }

    async fn accept(&mut self, job: Job) {
        let id = job.id.clone();
        match self.prepare(&job) {
            Ok(run) => {
                // Journal first, then confirm the claim; only then does anything run.
                if let Err(e) = self.journal.record_accepted(&id) {
                    tracing::error!(job = %id, error = %e, "cannot journal the job; leaving it to be offered again");
                    return;
                }
                let confirm = JobUpdate {
                    status: Some(JobStatus::Dispatched),
                    ..Default::default()
                };
                if let Err(e) = self.client.update_job(&id, &confirm).await {
                    tracing::warn!(job = %id, error = %e, "cannot confirm the claim; the server will offer it again");
                    let _ = self.journal.forget(&id);
                    return;
                }
                tracing::info!(job = %id, job_type = %run.job.job_type, "accepted");
                self.jobs.insert(id, run);
            }
            Err(message) => self.refuse(&job, message).await,
        }
    }

    /// Downloads a pending code bundle into quarantine, computes its SHA-256 here and reports
    /// it. The bytes are never unpacked or run: they stay in `<work>/.code/quarantine`.
    async fn verify_code(&self, id: &str) -> Result<(), String> {
        if !hpcsera_api_types::is_code_id(id) {
            return Err(format!("{id:?} is not a code bundle id"));
        }
        let dir = self.cfg.work_dir.join(".code").join("quarantine");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
                return Err(e.to_string());
            }
        };
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o600));
        }
        let kept = dir.join(id);
        if let Err(e) = std::fs::rename(&part, &kept) {
            let _ = std::fs::remove_file(&part);
            return Err(format!("cannot keep {}: {e}", kept.display()));
        }
        self.client
            .report_hpc_digest(id, &sha)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(code = %id, size, hpc_sha256 = %sha, matches = (sha == id), "reported the HPC-side digest of a code bundle");
        Ok(())
    }

    /// Cleans `<work>/.code/quarantine`: removes leftovers of interrupted downloads, files
    /// that are not bundles, and bundles that are no longer pending (approved ones are fetched
    /// again for use; rejected or forgotten ones are never needed); then keeps at most
    /// `max_quarantine_bytes` of the rest, newest first. A bundle whose status cannot be read
    /// now is kept for the next time.
    async fn clean_quarantine(&mut self) {
        self.quarantine_cleaned = Some(std::time::Instant::now());
        let dir = self.cfg.work_dir.join(".code").join("quarantine");
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
            let keep = if !m.is_file() || !hpcsera_api_types::is_code_id(&name) {
                false
            } else {
                match self.client.code_status(&name).await {
                    Ok(b) => b.status == hpcsera_client::CodeStatus::PendingApproval,
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
    async fn prepare_code(&self, run: &Running) -> Result<Vec<(String, PathBuf)>, String> {
        let mut out = Vec::new();
        for p in &run.jt.parameters {
            if p.kind != hpcsera_api_types::ParamKind::Code {
                continue;
            }
            let Some(id) = run.params.get(&p.name).and_then(Value::as_str) else {
                continue;
            };
            if !hpcsera_api_types::is_code_id(id) {
                return Err(format!(
                    "parameter {}: {id:?} is not a code bundle id",
                    p.name
                ));
            }
            let code_root = run.ctx.job_dir.join("code");
            let target = code_root.join(&p.name);
            if target.is_dir() {
                out.push((p.name.clone(), target));
                continue;
            }
            // The server only hands out jobs whose code is approved; ask anyway before
            // fetching anything for use.
            match self.client.code_status(id).await {
                Ok(b) if b.status == hpcsera_client::CodeStatus::Approved => {}
                Ok(b) => {
                    return Err(format!(
                        "code bundle {id} ({}) is {}, not approved; refusing to run it",
                        p.name, b.status
                    ))
                }
                Err(e) => return Err(format!("cannot check code bundle {id} ({}): {e}", p.name)),
            }
            std::fs::create_dir_all(&code_root)
                .map_err(|e| format!("cannot create {}: {e}", code_root.display()))?;
            let archive = code_root.join(format!(".{}.tar.gz.part", p.name));
            let max = self.cfg.limits.max_code_unpacked_bytes;
            let downloaded = self.client.download_code(id, &archive, max).await;
            let (_, sha) = match downloaded {
                Ok(x) => x,
                Err(e) => {
                    let _ = std::fs::remove_file(&archive);
                    return Err(format!("cannot fetch code bundle {id} ({}): {e}", p.name));
                }
            };
            if sha != id {
                let _ = std::fs::remove_file(&archive);
                return Err(format!(
                    "code bundle {id} ({}): the downloaded bytes have SHA-256 {sha}, not the approved digest; refusing to unpack",
                    p.name
                ));
            }
            let limits = crate::unpack::UnpackLimits {
                max_entries: self.cfg.limits.max_code_entries,
                max_bytes: self.cfg.limits.max_code_unpacked_bytes,
            };
            let (a, t) = (archive.clone(), target.clone());
            let unpacked =
                tokio::task::spawn_blocking(move || crate::unpack::unpack_tar_gz(&a, &t, &limits))
                    .await;
            let _ = std::fs::remove_file(&archive);
            match unpacked {
                Ok(Ok(stats)) => {
                    tracing::info!(job = %run.job.id, code = %id, entries = stats.entries, bytes = stats.bytes, "unpacked code bundle");
                }
                Ok(Err(e)) => return Err(format!("code bundle {id} ({}) refused: {e}", p.name)),
                Err(e) => return Err(format!("unpacking code bundle {id} failed: {e}")),
            }
            out.push((p.name.clone(), target));
        }
        Ok(out)
    }

    /// Logs what the agent did about a job the server no longer gives it and, when the job is
    /// `lost`, records it in the job's events (`POST /agent/jobs/{id}/cleanup`).
    async fn cleaned_up(&self, id: &str, done: Vec<String>) {
        let what = if done.is_empty() {
            "nothing of it was running".to_string()
        } else {
            done.join("; ")
        };
        tracing::warn!(job = %id, done = %what, "cleaned up a job the server no longer gives to this agent");
        let message = fit(&format!(
            "the agent came back after the job was lost: {what}"
        ));
        match self.client.agent_cleanup(id, &message).await {
            Ok(_) => {}
            // Not lost (deleted, or given to another agent): nothing to record.
            Err(e) if matches!(e.status(), Some(404 | 409)) => {
                tracing::info!(job = %id, error = %e, "the cleanup is not recorded on the server")
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "cannot record the cleanup"),
        }
    }

    /// Fails a job the agent will not run (unknown job type, parameters its config refuses).
    async fn refuse(&self, job: &Job, message: String) {
        tracing::warn!(job = %job.id, message = %fit(&message), "refusing a job");
        let end = JobUpdate {
            status: Some(JobStatus::Failed),
            message: Some(fit(&message)),
            ..Default::default()
        };
        if let Err(e) = self.client.update_job(&job.id, &end).await {
            tracing::warn!(job = %job.id, error = %e, "cannot report the refusal");
        }
    }

    async fn operation(&mut self, id: &str, op: Operation) {
        let Some(run) = self.jobs.get(id) else {
            let _ = self
                .client
                .operation_done(
                    id,
                    &OperationDone {
                        operation: op,
                        ok: false,
                        message: Some("the agent does not run this job".into()),
                    },
                )
                .await;
            return;
        };
        let batch_id = match &run.step {
            Step::Batch { batch, .. } => Some(batch.id.clone()),
            _ => None,
        };
        let result: Result<String, String> = match (op, &batch_id) {
            (Operation::Cancel, _) => {
                let run = self.jobs.remove(id);
                if let Some(run) = run {
                    let stopped = self.stop_step(&run).await;
                    let msg = match stopped {
                        Ok(()) => "cancelled on request".to_string(),
                        Err(e) => format!("cancelled on request; stopping it failed: {e}"),
                    };
                    let mut run = run;
                    self.finish(
                        &mut run,
                        End {
                            status: JobStatus::Cancelled,
                            exit_code: None,
                            message: msg.clone(),
                        },
                    )
                    .await;
                    Ok(msg)
                } else {
                    Err("gone".into())
                }
            }
            (Operation::Hold, Some(b)) => self
                .adapter
                .hold(b)
                .await
                .map(|()| format!("batch job {b} held"))
                .map_err(|e| e.to_string()),
            (Operation::Release, Some(b)) => self
                .adapter
                .release(b)
                .await
                .map(|()| format!("batch job {b} released"))
                .map_err(|e| e.to_string()),
            (_, None) => Err(
                "the job is not in the batch system now; only batch jobs can be held or released"
                    .into(),
            ),
        };
        let done = match result {
            Ok(m) => OperationDone {
                operation: op,
                ok: true,
                message: Some(fit(&m)),
            },
            Err(m) => OperationDone {
                operation: op,
                ok: false,
                message: Some(fit(&m)),
            },
        };
        if let Err(e) = self.client.operation_done(id, &done).await {
            tracing::warn!(job = %id, error = %e, "cannot acknowledge the operation");
        }
    }

    /// Stops what a job runs now (its batch job or login process).
    async fn stop_step(&self, run: &Running) -> Result<(), String> {
        match &run.step {
            Step::Batch { batch, .. } => self
                .adapter
                .cancel(&batch.id)
                .await
                .map_err(|e| e.to_string()),
            Step::Login(h) => {
                h.abort();
                Ok(())
            }
            Step::Start => Ok(()),
        }
    }

    /// Moves every job on: one status query for all batch jobs, then each job's next steps,
    /// then output.
    async fn advance(&mut self, finish_login: bool) {
        let refs: Vec<BatchJobRef> = self
            .jobs
            .values()
            .filter_map(|r| match &r.step {
                Step::Batch { batch, .. } => Some(batch.clone()),
                _ => None,
            })
            .collect();
        if !refs.is_empty() {
            match self.adapter.status_all(&refs).await {
                Ok(states) => {
                    let ids: Vec<String> = self.jobs.keys().cloned().collect();
                    for id in ids {
                        let Some(mut run) = self.jobs.remove(&id) else {
                            continue;
                        };
                        let state = match &run.step {
                            Step::Batch { batch, .. } => states.get(&batch.id).cloned(),
                            _ => None,
                        };
                        let outcome = match state {
                            Some(s) => self.batch_state(&mut run, s).await,
                            None => Ok(()),
                        };
                        match outcome {
                            Err(end) => self.finish(&mut run, end).await,
                            Ok(()) => {
                                self.jobs.insert(id, run);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch status query failed; trying again next cycle")
                }
            }
        }
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            let Some(mut run) = self.jobs.remove(&id) else {
                continue;
            };
            loop {
                match self.step(&mut run, finish_login).await {
                    Ok(None) if matches!(run.step, Step::Start) => continue,
                    Ok(None) => {
                        self.send_output(&mut run).await;
                        self.jobs.insert(id, run);
                    }
                    Ok(Some(end)) | Err(end) => self.finish(&mut run, end).await,
                }
                break;
            }
        }
    }

    /// Starts the next sub-job or collects a finished login sub-job. `Ok(Some)` ends the job.
    async fn step(&mut self, run: &mut Running, finish_login: bool) -> Result<Option<End>, End> {
        match &mut run.step {
            Step::Start => {
                if run.code.is_none() {
                    let code = self.prepare_code(run).await.map_err(fail)?;
                    run.code = Some(code);
                }
                let Some(sub) = run.sub().cloned() else {
                    return Ok(Some(End {
                        status: JobStatus::Completed,
                        exit_code: Some(0),
                        message: "all sub-jobs succeeded".into(),
                    }));
                };
                let (o, e) = output_files(&run.ctx.job_dir, &sub.name);
                if run.out.files.len() <= run.index {
                    run.out.files.push((o.clone(), 0));
                    run.err.files.push((e.clone(), 0));
                }
                std::fs::create_dir_all(&run.ctx.job_dir)
                    .map_err(|err| fail(format!("cannot create the job directory: {err}")))?;
                match sub.kind {
                    SubJobKind::Login => {
                        let command = sub
                            .login_command()
                            .ok_or_else(|| fail(format!("sub-job {} has no command", sub.name)))?;
                        let mut env = job_env(&run.ctx, &sub.name, &run.params)
                            .map_err(|e| fail(e.to_string()))?;
                        add_code_env(&mut env, run.code.as_deref());
                        let req = LoginRequest {
                            command,
                            env,
                            work_dir: run.ctx.job_dir.clone(),
                            timeout: Duration::from_secs(sub.timeout_seconds),
                            stdout_path: o,
                            stderr_path: e,
                            max_output_bytes: self.cfg.limits.max_output_bytes,
                        };
                        let _ = self.journal.record_intent(
                            &run.job.id,
                            &sub.name,
                            &format!("login:{}", sub.name),
                            None,
                        );
                        let to = if run.jt.sub_jobs[..run.index]
                            .iter()
                            .any(|s| s.kind == SubJobKind::Batch)
                        {
                            JobStatus::Completing
                        } else {
                            JobStatus::Staging
                        };
                        set_sub(run, "running", None, None, None);
                        self.report(run, to, None).await;
                        run.step = Step::Login(tokio::spawn(async move { run_login(&req).await }));
                        Ok(None)
                    }
                    SubJobKind::Batch => {
                        let script = sub
                            .script
                            .as_deref()
                            .ok_or_else(|| fail(format!("sub-job {} has no script", sub.name)))?;
                        let rendered = render_batch_script(&run.ctx.job_dir, &sub.name, script)
                            .map_err(|e| fail(e.to_string()))?;
                        let mut env =
                            batch_env(&run.ctx, &sub.name, &run.params, &rendered.exit_file)
                                .map_err(|e| fail(e.to_string()))?;
                        add_code_env(&mut env, run.code.as_deref());
                        let name = batch_job_name(&run.job.id, &sub.name);
                        let mut options = self.cfg.batch.submit_options.clone();
                        options.extend(sub.options.iter().cloned());
                        let req = SubmitRequest {
                            script_path: rendered.path,
                            work_dir: run.ctx.job_dir.clone(),
                            job_name: name.clone(),
                            env,
                            options,
                            stdout_path: o,
                            stderr_path: e,
                        };
                        self.journal
                            .record_intent(&run.job.id, &sub.name, &name, Some(&rendered.exit_file))
                            .map_err(|e| fail(format!("cannot journal the submission: {e}")))?;
                        let id =
                            self.adapter.submit(&req).await.map_err(|e| {
                                fail(format!("submitting {} failed: {e}", sub.name))
                            })?;
                        if let Err(e) = self.journal.record_submitted(&run.job.id, &sub.name, &id) {
                            tracing::error!(job = %run.job.id, error = %e, "cannot journal the batch id");
                        }
                        tracing::info!(job = %run.job.id, sub_job = %sub.name, batch_id = %id, "submitted");
                        set_sub(run, "submitted", Some(id.clone()), None, None);
                        run.step = Step::Batch {
                            batch: BatchJobRef::new(id.clone(), Some(rendered.exit_file)),
                            unknown: 0,
                        };
                        self.report(run, JobStatus::Submitted, Some(id)).await;
                        Ok(None)
                    }
                }
            }
            Step::Login(handle) => {
                if !handle.is_finished() && !finish_login {
                    return Ok(None);
                }
                let Step::Login(handle) = std::mem::replace(&mut run.step, Step::Start) else {
                    return Ok(None);
                };
                let name = run.sub().map(|s| s.name.clone()).unwrap_or_default();
                let outcome = handle
                    .await
                    .map_err(|e| fail(format!("login sub-job {name} did not finish: {e}")))?;
                match outcome {
                    Ok(o) if o.success() => {
                        let _ = self
                            .journal
                            .record_done(&run.job.id, &name, Some(0), "succeeded");
                        set_sub(run, "completed", None, Some(0), None);
                        run.index += 1;
                        Ok(None)
                    }
                    Ok(o) => {
                        let m = format!("login sub-job {name} {}", o.describe());
                        set_sub(run, "failed", None, o.exit_code, Some(m.clone()));
                        Err(End {
                            status: JobStatus::Failed,
                            exit_code: o.exit_code,
                            message: m,
                        })
                    }
                    Err(e) => {
                        let m = format!("login sub-job {name}: {e}");
                        set_sub(run, "failed", None, None, Some(m.clone()));
                        Err(fail(m))
                    }
                }
            }
            Step::Batch { .. } => Ok(None),
        }
    }

    /// Applies a batch job's state; `Err` ends the job.
    async fn batch_state(&mut self, run: &mut Running, state: BatchState) -> Result<(), End> {
        let name = run.sub().map(|s| s.name.clone()).unwrap_or_default();
        let batch_id = match &run.step {
            Step::Batch { batch, .. } => batch.id.clone(),
            _ => return Ok(()),
        };
        match state {
            BatchState::Pending | BatchState::Held => Ok(()),
            BatchState::Running => {
                set_sub(run, "running", Some(batch_id), None, None);
                self.report(run, JobStatus::Running, None).await;
                Ok(())
            }
            BatchState::Completed { exit_code: 0 } => {
                let _ = self
                    .journal
                    .record_done(&run.job.id, &name, Some(0), "completed");
                set_sub(run, "completed", Some(batch_id), Some(0), None);
                self.drain_output(run).await;
                run.index += 1;
                run.step = Step::Start;
                Ok(())
            }
            BatchState::Completed { exit_code }
            | BatchState::Failed {
                exit_code: Some(exit_code),
                ..
            } => {
                let _ = self
                    .journal
                    .record_done(&run.job.id, &name, Some(exit_code), "failed");
                let m = format!(
                    "batch sub-job {name} (batch job {batch_id}) exited with code {exit_code}"
                );
                set_sub(
                    run,
                    "failed",
                    Some(batch_id),
                    Some(exit_code),
                    Some(m.clone()),
                );
                Err(End {
                    status: JobStatus::Failed,
                    exit_code: Some(exit_code),
                    message: m,
                })
            }
            BatchState::Failed {
                exit_code: None,
                reason,
            } => {
                let _ = self.journal.record_done(&run.job.id, &name, None, &reason);
                let m = format!("batch sub-job {name} (batch job {batch_id}) failed: {reason}");
                set_sub(run, "failed", Some(batch_id), None, Some(m.clone()));
                Err(fail(m))
            }
            BatchState::Cancelled => {
                let _ = self
                    .journal
                    .record_done(&run.job.id, &name, None, "cancelled");
                set_sub(run, "cancelled", Some(batch_id.clone()), None, None);
                Err(End {
                    status: JobStatus::Cancelled,
                    exit_code: None,
                    message: format!("batch job {batch_id} was cancelled in the batch system"),
                })
            }
            BatchState::Unknown => {
                if let Step::Batch { unknown, .. } = &mut run.step {
                    *unknown += 1;
                    if *unknown >= UNKNOWN_LIMIT {
                        return Err(fail(format!(
                            "the batch system no longer knows batch job {batch_id} and it left no exit code"
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// Reports a status change, forward only (a login step after a batch step does not move
    /// the job back), with the sub-job states and a new batch id.
    async fn report(&self, run: &mut Running, to: JobStatus, batch_job_id: Option<String>) {
        let status = (to != run.reported && run.reported.can_transition_to(to)).then_some(to);
        if status.is_none() && batch_job_id.is_none() {
            return;
        }
        let update = JobUpdate {
            status,
            batch_job_id,
            sub_jobs: Some(run.sub_states.clone()),
            ..Default::default()
        };
        match self.client.update_job(&run.job.id, &update).await {
            Ok(j) => run.reported = j.status,
            Err(e) => tracing::warn!(job = %run.job.id, error = %e, "status report failed"),
        }
    }

    /// Ends a job: last output, result files, final report, journal.
    async fn finish(&mut self, run: &mut Running, end: End) {
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
        tracing::info!(job = %run.job.id, status = %end.status, exit_code = ?end.exit_code, "finished");
        if let Err(e) = self.journal.forget(&run.job.id) {
            tracing::warn!(job = %run.job.id, error = %e, "cannot clean the journal");
        }
    }

    async fn drain_output(&self, run: &mut Running) {
        for _ in 0..64 {
            if !self.send_output(run).await {
                break;
            }
        }
    }

    /// Sends new output of both streams; true while more may be waiting.
    async fn send_output(&self, run: &mut Running) -> bool {
        let mut more = false;
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let s = match stream {
                OutputStream::Stdout => &mut run.out,
                OutputStream::Stderr => &mut run.err,
            };
            if s.truncated {
                continue;
            }
            let (chunk, file_index, new_pos) = match next_chunk(&run.ctx.job_dir, s) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err((index, why)) => {
                    s.refused.insert(index);
                    let name = s.files[index]
                        .0
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    tracing::warn!(job = %run.job.id, file = %name, reason = %why, "output file not read");
                    run.skipped.push(format!("{name} ({why})"));
                    more = true;
                    continue;
                }
            };
            match self
                .client
                .append_output(&run.job.id, stream, s.server_len, &chunk)
                .await
            {
                Ok(len) => {
                    let sent = len.saturating_sub(s.server_len);
                    if sent > chunk.len() as u64 {
                        // The server had more than this agent knew (bytes sent before a
                        // restart): continue at the file position of the server's length,
                        // never send bytes again at a later offset.
                        s.server_len = len;
                        skip_sent(s);
                        more = true;
                        continue;
                    }
                    if sent < chunk.len() as u64 {
                        s.truncated = true;
                    }
                    s.server_len = len;
                    s.files[file_index].1 = new_pos;
                    more |= chunk.len() as u64 >= OUTPUT_CHUNK;
                }
                Err(e) => {
                    tracing::warn!(job = %run.job.id, error = %e, "cannot send output; trying again next cycle");
                    return false;
                }
            }
        }
        more
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
        let max = self.cfg.limits.max_result_bytes;
        for (name, path) in files {
            if !is_valid_result_name(&name) {
                tracing::warn!(job = %run.job.id, file = %name, "result file name not accepted; skipped");
                continue;
            }
            let (root, p) = (run.ctx.job_dir.clone(), path.clone());
            let read = tokio::task::spawn_blocking(move || read_inside(&root, &p, max)).await;
            match read {
                Ok(Ok(Some(data))) => {
                    if let Err(e) = self.client.put_result(&run.job.id, &name, &data).await {
                        tracing::warn!(job = %run.job.id, file = %name, error = %e, "cannot upload result file");
                    }
                }
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
}

/// Removes a file, link or directory tree (not following links); true when it is gone.
fn remove_any(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).is_ok(),
        Ok(_) => std::fs::remove_file(path).is_ok(),
        Err(_) => true,
    }
}

/// `HPCSERA_CODE_<parameter>`: where a code parameter's bundle was unpacked.
fn add_code_env(env: &mut Vec<(String, String)>, code: Option<&[(String, PathBuf)]>) {
    for (name, dir) in code.unwrap_or_default() {
        env.push((
            format!("HPCSERA_CODE_{name}"),
            dir.to_string_lossy().into_owned(),
        ));
    }
    env.sort();
}

/// `m` cut to [`MAX_MESSAGE_BYTES`] on a character boundary, marked with "…" when cut.
pub fn fit(m: &str) -> String {
    if m.len() <= MAX_MESSAGE_BYTES {
        return m.to_string();
    }
    let mark = "…";
    let mut end = MAX_MESSAGE_BYTES - mark.len();
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &m[..end])
}

fn fail(message: String) -> End {
    End {
        status: JobStatus::Failed,
        exit_code: None,
        message,
    }
}

fn set_sub(
    run: &mut Running,
    status: &str,
    batch_job_id: Option<String>,
    exit_code: Option<i32>,
    message: Option<String>,
) {
    if let Some(s) = run.sub_states.get_mut(run.index) {
        s.status = status.to_string();
        if batch_job_id.is_some() {
            s.batch_job_id = batch_job_id;
        }
        if exit_code.is_some() {
            s.exit_code = exit_code;
        }
        if let Some(m) = message {
            s.message = Some(fit(&m));
        }
    }
}

/// The stdout and stderr files of a sub-job.
pub fn output_files(job_dir: &Path, sub_job: &str) -> (PathBuf, PathBuf) {
    (
        job_dir.join(format!("{sub_job}.out")),
        job_dir.join(format!("{sub_job}.err")),
    )
}

/// Marks the first `server_len` bytes of the stream's files as sent (after a restart).
fn skip_sent(s: &mut Stream) {
    let mut left = s.server_len;
    for (path, pos) in s.files.iter_mut() {
        let len = std::fs::symlink_metadata(path.as_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let take = left.min(len);
        *pos = take;
        left -= take;
    }
}

/// Unsent bytes of a stream: (bytes, index of the file, its new read position).
type Chunk = (Vec<u8>, usize, u64);

/// The next unsent bytes of a stream: (bytes, index of the file, its new read position).
/// Earlier files are finished before later ones are read, so the order is kept. A file that
/// is a link out of the job directory is `Err((index, why))`: it is never read.
fn next_chunk(job_dir: &Path, s: &Stream) -> Result<Option<Chunk>, (usize, String)> {
    use std::io::{Read, Seek, SeekFrom};
    for (i, (path, pos)) in s.files.iter().enumerate() {
        if s.refused.contains(&i) {
            continue;
        }
        let mut f = match open_inside(job_dir, path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if is_refusal(&e) => return Err((i, e.to_string())),
            Err(_) => return Ok(None),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= *pos {
            continue;
        }
        if f.seek(SeekFrom::Start(*pos)).is_err() {
            return Ok(None);
        }
        let want = (len - pos).min(OUTPUT_CHUNK);
        let mut buf = Vec::with_capacity(want as usize);
        if f.take(want).read_to_end(&mut buf).is_err() {
            return Ok(None);
        }
        if buf.is_empty() {
            continue;
        }
        let new_pos = pos + buf.len() as u64;
        return Ok(Some((buf, i, new_pos)));
    }
    Ok(None)
}

/// Whether an error of [`open_inside`] is a refusal (a link, or a place outside the job).
fn is_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::PermissionDenied
}

/// Opens a regular file of the job directory for reading without following a symlink at its
/// end (`O_NOFOLLOW`: a link is `ELOOP`), and checks after opening that the file really is
/// inside the job directory (a linked parent directory would lead elsewhere).
fn open_inside(job_dir: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let refuse = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} {why}", path.display()),
        )
    };
    if !f.metadata()?.is_file() {
        return Err(refuse("is not a regular file"));
    }
    let root = std::fs::canonicalize(job_dir)?;
    let real = {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .or_else(|_| std::fs::canonicalize(path))?
    };
    if !real.starts_with(&root) {
        return Err(refuse("leads out of the job directory"));
    }
    Ok(f)
}

/// Reads a file of the job directory ([`open_inside`]); `None` when it has more than `max`
/// bytes.
fn read_inside(job_dir: &Path, path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = open_inside(job_dir, path)?;
    let mut data = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= max).then_some(data))
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
    if depth > 16 || out.len() > 1000 {
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
            if skipped.len() < 20 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_on_a_char_boundary() {
        assert_eq!(fit("short"), "short");
        let exact = "a".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(fit(&exact), exact);
        for pad in 0..4 {
            let m = format!("{}{}", "a".repeat(pad), "日本語🚀".repeat(2000));
            let cut = fit(&m);
            assert!(cut.len() <= MAX_MESSAGE_BYTES, "{}", cut.len());
            assert!(cut.len() > MAX_MESSAGE_BYTES - 8);
            assert!(cut.ends_with('…'));
            assert!(m.starts_with(cut.trim_end_matches('…')));
        }
    }
}
