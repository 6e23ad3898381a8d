//! The agent and its loop: [`Agent::new`] (work dir, lock, journal, adapter, client),
//! [`Agent::start`], [`Agent::run`], [`Agent::cycle`].
//!
//! # Where the agent may stop
//!
//! Shutdown is taken only at a safe point, as mini-redis's `Handler::run` does: `run` races
//! the shutdown signal against the **long poll** and against the **pauses** between cycles,
//! never against the work a poll reply brings (operations, accepting jobs, submitting,
//! reporting, sending output). A poll cut short is safe: jobs the server claimed for the
//! agent in it are offered again, because the agent never confirmed them and nothing ran.
//! Work cut short is not: a submit between its journal intent and its batch id, a job's end
//! reported but not yet forgotten, output sent but its offset not kept. So once a reply is in
//! hand the cycle runs to its end (bounded by the batch commands' and the HTTP timeouts) and
//! the signal is looked at again before the next poll.
//!
//! # Hand-off between sub-jobs
//!
//! A sub-job's end wakes the loop at once ([`Agent::wake`], a [`Notify`]): the task that
//! waits for a login step's process fires it when the process exits, and so does the local
//! adapter's reaper when a batch job's process exits ([`BatchAdapter::end_signal`]). The
//! loop does not give up the poll it has in flight for that (a poll cut short may hold jobs
//! the server just claimed, which would wait for their claim lease to run out): the poll is
//! an owned future that stays pending while the woken work runs, [`Agent::woken`], which
//! collects what ended and starts the next sub-jobs. The woken work is work like a reply's
//! (not raced against the shutdown), and it never asks a batch system for states: with an
//! adapter that has no end signal (Slurm, PBS, LSF) the states still come from the one status
//! query per cycle; with the local adapter, whose status query reads files and spawns
//! nothing, it reads them at once.
//!
//! This module owns the loop and the agent's state; the work of a cycle lives in the sibling
//! modules. It must never run a job's steps itself.

use super::error::{io, AgentError};
use super::job::Running;
use crate::batch::probe::Probe;
use crate::batch::BatchAdapter;
use crate::config::AgentConfig;
use crate::journal::Journal;
use crate::provenance::Signer;
use hpcsera_api_types::{AgentPoll, AgentPollReply, PublishJobTypes};
use hpcsera_client::Client;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// The agent.
pub struct Agent {
    pub(super) cfg: AgentConfig,
    pub(super) client: Client,
    pub(super) adapter: Arc<dyn BatchAdapter>,
    /// What was accepted and submitted: survives a restart (see [`crate::journal`]).
    pub(super) journal: Journal,
    /// The jobs held now, by id.
    pub(super) jobs: HashMap<String, Running>,
    /// Code bundles whose digest this agent has reported (not reported again).
    pub(super) verified: HashSet<String>,
    /// When the quarantine was last cleaned.
    pub(super) quarantine_cleaned: Option<Instant>,
    /// The agent's signing key (provenance).
    pub(super) signer: Signer,
    /// What the batch system's version command said (asked once, at the first job's end).
    pub(super) batch_version: Option<Option<Probe>>,
    /// SHA-256 of container image files, by path, with the (size, mtime) they were hashed at.
    pub(super) image_digests: HashMap<PathBuf, ((u64, SystemTime), String)>,
    /// Fired when a login step's process or (local adapter) a batch job's process ends: the
    /// loop moves the job on at once (see the module docs).
    pub(super) wake: Arc<Notify>,
    /// Whether the adapter fires [`Agent::wake`] itself and its status query costs no
    /// command (the local adapter): a wake-up then asks for the batch states too.
    track_on_wake: bool,
    /// How many times the loop was woken by a sub-job's end (tests).
    wakes: u64,
    /// Held (locked) while the agent lives: one agent per work directory.
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

/// This machine's host name.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Creates the work directory (0700) and warns when it is open to others.
fn create_work_dir(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!(
            "cannot create the work directory {}",
            dir.display()
        )))?;
    if let Ok(m) = std::fs::metadata(dir) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(work_dir = %dir.display(), mode = format!("{:o}", m.permissions().mode() & 0o7777),
                "the work directory is open to group or others; consider chmod 700");
        }
    }
    Ok(())
}

/// Takes the work directory's lock file; [`AgentError::Locked`] when another agent has it.
fn lock_work_dir(dir: &Path) -> Result<std::fs::File, AgentError> {
    let lock_path = dir.join(".hpcsera-agent.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("cannot open {}", lock_path.display())))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(io(format!("cannot lock {}", lock_path.display()))(e))
        }
    }
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
        create_work_dir(&cfg.work_dir)?;
        let lock = lock_work_dir(&cfg.work_dir)?;
        let journal = Journal::open(cfg.work_dir.join(".journal"))?;
        let signer = Signer::load_or_create(&cfg.key_file())?;
        let adapter =
            crate::batch::adapter_from_config(&cfg.batch, cfg.work_dir.join(".local-batch"))?;
        let wait = cfg
            .poll
            .long_poll_seconds
            .max(cfg.poll.status_interval_seconds);
        let client = Client::with_options(
            &cfg.server_url,
            token,
            &hpcsera_client::HttpOptions {
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(wait + 30),
                ca_file: cfg.ca_file.clone(),
            },
        )?;
        let signal = adapter.end_signal();
        let track_on_wake = signal.is_some();
        let agent = Agent {
            wake: signal.unwrap_or_default(),
            track_on_wake,
            wakes: 0,
            cfg,
            client,
            adapter,
            journal,
            jobs: HashMap::new(),
            verified: Default::default(),
            quarantine_cleaned: None,
            signer,
            batch_version: None,
            image_digests: HashMap::new(),
            _lock: lock,
        };
        agent.check_approval_setup()?;
        Ok(agent)
    }

    /// The batch adapter (tests count its commands).
    pub fn adapter(&self) -> &Arc<dyn BatchAdapter> {
        &self.adapter
    }

    /// How many times [`Agent::run`]'s loop was woken by the end of a sub-job's process
    /// rather than by a poll reply (tests).
    pub fn wakes(&self) -> u64 {
        self.wakes
    }

    /// Publishes the job types and resumes journaled jobs. Call once before cycles.
    pub async fn start(&mut self) -> Result<(), AgentError> {
        self.client
            .publish_job_types(
                &self.cfg.site,
                &PublishJobTypes {
                    agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                    agent_host: Some(host_name()),
                    agent_key: Some(self.signer.public().to_string()),
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

    /// Runs cycles until `shutdown` resolves, which is looked at only at the safe points
    /// (see the module docs). Jobs in the batch system keep running; the journal lets the
    /// next start pick them up.
    pub async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let wake = self.wake.clone();
        loop {
            // Safe point: the long poll (nothing taken on yet). A sub-job's end meanwhile is
            // handled while the poll stays in flight (see the module docs).
            let poll = self.poll(self.wait_seconds());
            tokio::pin!(poll);
            let reply = loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => {
                        self.stopping();
                        return Ok(());
                    }
                    r = &mut poll => break r,
                    // Not raced against the shutdown: this work runs to its end.
                    _ = wake.notified() => self.woken().await,
                }
            };
            let pause = match reply {
                // Not raced against the shutdown: this work runs to its end.
                Ok(reply) => self.apply(reply, false).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cycle failed; trying again");
                    true
                }
            };
            if pause {
                // Safe point: a pause between cycles (a sub-job's end is handled in it).
                let nap = tokio::time::sleep(self.idle_interval());
                tokio::pin!(nap);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => {
                            self.stopping();
                            return Ok(());
                        }
                        _ = &mut nap => break,
                        _ = wake.notified() => self.woken().await,
                    }
                }
            }
        }
    }

    /// The work after a sub-job's process ended: collect finished login steps and (local
    /// adapter) batch steps, start the next sub-jobs, end finished jobs.
    async fn woken(&mut self) {
        self.wakes += 1;
        self.advance(false, self.track_on_wake).await;
    }

    fn stopping(&self) {
        tracing::info!(
            jobs = self.jobs.len(),
            "stopping; jobs in the batch system go on and are resumed at the next start"
        );
    }

    /// How long the next poll may wait on the server. Idle: long. Jobs held: the status
    /// interval (leases are renewed and batch states asked once per cycle). A login step's
    /// end does not need a short wait: it wakes the loop (see the module docs).
    fn wait_seconds(&self) -> u32 {
        let wait = if self.jobs.is_empty() {
            self.cfg.poll.long_poll_seconds
        } else {
            self.cfg
                .poll
                .status_interval_seconds
                .min(self.cfg.poll.long_poll_seconds)
        };
        wait as u32
    }

    fn idle_interval(&self) -> Duration {
        Duration::from_secs(self.cfg.poll.idle_interval_seconds.max(1))
    }

    /// One cycle without waiting on the server (`--once`, for cron); login sub-jobs it starts
    /// are awaited, since the process ends after the cycle.
    pub async fn once(&mut self) -> Result<(), AgentError> {
        self.cycle(0, true).await
    }

    /// One cycle (see the module docs of [`crate::runtime`]): poll, then the work the reply
    /// brings, then a pause when the cycle asks for one.
    pub async fn cycle(&mut self, wait_seconds: u32, finish_login: bool) -> Result<(), AgentError> {
        let reply = self.poll(wait_seconds).await?;
        if self.apply(reply, finish_login).await {
            tokio::time::sleep(self.idle_interval()).await;
        }
        Ok(())
    }

    /// `POST /agent/poll`: renews the leases of the jobs held and takes new ones while
    /// there is room. The future owns what it needs (it borrows nothing from the agent), so
    /// that the loop can keep it in flight while it handles a sub-job's end.
    fn poll(
        &self,
        wait_seconds: u32,
    ) -> impl Future<Output = Result<AgentPollReply, AgentError>> + Send + 'static {
        let room = self
            .cfg
            .limits
            .max_active_jobs
            .saturating_sub(self.jobs.len()) as u32;
        let poll = AgentPoll {
            active_job_ids: self.jobs.keys().cloned().collect(),
            max_jobs: room,
            wait_seconds,
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        };
        let client = self.client.clone();
        async move { Ok(client.agent_poll(&poll).await?) }
    }

    /// The work of one poll reply, in order: released jobs, operations, code to verify, new
    /// jobs, then every job moves on. True when the next cycle should wait first.
    async fn apply(&mut self, reply: AgentPollReply, finish_login: bool) -> bool {
        for id in &reply.released_job_ids {
            self.drop_released(id).await;
        }
        for op in &reply.operations {
            self.operation(&op.job_id, op.operation).await;
        }
        // A bundle that cannot be verified stays listed: do not spin on it.
        let pause = self.verify_pending(&reply.code_to_verify).await;
        for job in reply.jobs {
            self.accept(job).await;
        }
        self.advance(finish_login, true).await;
        pause
    }
}
