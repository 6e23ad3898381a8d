//! Shared set-up of the end-to-end tests: an in-process server on a fresh database (SQLite, or
//! PostgreSQL when `HPCSERA_TEST_DATABASE_URL` names one) and the real `hpcsera agent` binary
//! as a child process — on Slurm when `HPCSERA_TEST_ADAPTER=slurm`, else on the local adapter.
//! The web UI's browser tests (`tests/ui`) include this file too, for their pages that need a
//! real agent.

#![allow(dead_code)]

use crate::test_server::{serve, token};
use hpcsera_api_types::{Job, JobEvent, JobStatus, Role, RoleSet};
use hpcsera_client::Client;
use hpcsera_server::ServerConfig;
use hpcsera_store::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The one fresh-database helper of the API tests and the browser tests (whose harness uses it
/// from here).
#[path = "../../../server/tests/api/fresh_database.rs"]
pub mod fresh;

/// alice, a member of project `p`, with a client token (all roles, named `client`) and an
/// agent token for `site` (named `agent`): (client token, agent token).
pub async fn alice_in_p(store: &Store, site: &str, client: &str) -> (String, String) {
    store.create_user("alice", None, false).await.unwrap();
    store.create_project("p", "").await.unwrap();
    store.add_member("alice", "p").await.unwrap();
    let agent_roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode]
        .into_iter()
        .collect();
    let agent = token(store, "alice", "p", "agent", agent_roles, Some(site)).await;
    let client = token(store, "alice", "p", client, RoleSet::all(), None).await;
    (client, agent)
}

/// Spawns the real `hpcsera --log-format json server …` (`cmd`, its stderr piped) and waits for
/// the log line that names the address it listens on: the child (killed on drop) and the
/// address. The rest of its log is read and dropped.
pub async fn spawn_listening(mut cmd: tokio::process::Command) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd.kill_on_drop(true).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            if let Some(a) = v["fields"]["addr"].as_str() {
                return a.to_string();
            }
        }
        panic!("the server ended before listening");
    })
    .await
    .expect("the server did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

/// A finished command's exit code (-1 for a signal), stdout and stderr.
pub fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What `squeue -h ARGS…` prints, trimmed (Slurm runs only).
pub fn squeue(args: &[&str]) -> String {
    let out = std::process::Command::new("squeue")
        .arg("-h")
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `hpcsera` binary under test: `HPCSERA_TEST_BIN` when set (a target directory shared by
/// several worktrees may have its `target/debug/hpcsera` replaced by another build), else the
/// one cargo built for this test.
pub fn bin() -> PathBuf {
    std::env::var_os("HPCSERA_TEST_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hpcsera")))
}

pub fn slurm() -> bool {
    std::env::var("HPCSERA_TEST_ADAPTER").as_deref() == Ok("slurm")
}

/// Job types both the agent and the CLI tests use: `sleep` (sleeps `seconds`, prints start/end,
/// exits with `code`) and `later` (a batch job that waits in the queue: on Slurm it may only
/// start in an hour, so it can be held and released).
pub fn sleep_and_later_job_types() -> String {
    let text = include_str!("../../fixtures/job_types/sleep_and_later.toml");
    if slurm() {
        text.replace("options = []", r#"options = ["--begin=now+3600"]"#)
    } else {
        text.to_string()
    }
}

/// A directory to push as a code bundle: `bin/hello.sh` (0755, prints "pushed code says: $1")
/// and `data/input.txt` holding `message`.
pub fn code_tree(root: &Path, message: &str) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("bin/hello.sh"),
        "#!/bin/sh\necho \"pushed code says: $1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("bin/hello.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("data/input.txt"), format!("{message}\n")).unwrap();
}

/// Settings of a test set-up.
pub struct Opts {
    /// The agent takes at most this many jobs at a time.
    pub max_active_jobs: usize,
    /// The server's agent lease.
    pub lease_seconds: u64,
    /// More lines of the agent's `[limits]` table.
    pub agent_limits: String,
    /// The lines of the agent's `[approval]` table (none when empty).
    pub agent_approval: String,
    /// More lines of the agent's `[batch]` table.
    pub batch_extra: String,
    /// The server's limit of failed authentications per address and minute (0: none).
    pub auth_failures_per_minute: u32,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            max_active_jobs: 100,
            lease_seconds: 300,
            agent_limits: String::new(),
            agent_approval: String::new(),
            batch_extra: String::new(),
            auth_failures_per_minute: hpcsera_server::config::RateLimits::default()
                .auth_failures_per_minute,
        }
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub site: String,
    /// A client token with all roles.
    pub token: String,
    pub client: Client,
    pub store: Store,
    /// The server's database (admin commands in tests use it).
    pub db_url: String,
    /// Where the server keeps code bundles.
    pub code_dir: PathBuf,
    /// The agent's work directory.
    pub work: PathBuf,
    config: PathBuf,
    agent: Option<tokio::process::Child>,
    /// The test leaves batch jobs on purpose (its end cancels them without failing it).
    leftovers_expected: bool,
}

impl Env {
    /// A server, an agent for `site` with `job_types` (TOML `[[job_types]]` tables), and a
    /// client token of user `alice` in project `p`.
    pub async fn new(site: &str, job_types: &str) -> Env {
        Env::with_limits(site, job_types, 100).await
    }

    /// Like [`Env::new`], with the agent taking at most `max_active_jobs` jobs at a time.
    pub async fn with_limits(site: &str, job_types: &str, max_active_jobs: usize) -> Env {
        Env::with_opts(
            site,
            job_types,
            Opts {
                max_active_jobs,
                ..Opts::default()
            },
        )
        .await
    }

    /// Like [`Env::new`], with [`Opts`].
    pub async fn with_opts(site: &str, job_types: &str, opts: Opts) -> Env {
        let max_active_jobs = opts.max_active_jobs;
        if slurm() {
            assert!(
                std::process::Command::new("sbatch")
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "HPCSERA_TEST_ADAPTER=slurm but sbatch does not work: run scripts/setup-slurm.sh"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("hpcsera-test")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db_url = fresh::fresh_database(dir.path()).await;
        let store = Store::connect(&db_url).await.unwrap();
        // alice in p (the tokens below); mallory in another project.
        store.create_user("alice", None, false).await.unwrap();
        store.create_user("mallory", None, false).await.unwrap();
        store.create_project("p", "").await.unwrap();
        store.create_project("other", "").await.unwrap();
        store.add_member("alice", "p").await.unwrap();
        store.add_member("mallory", "other").await.unwrap();
        let code_dir = dir.path().join("code");
        let agent_roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode]
            .into_iter()
            .collect();
        let agent_token = token(&store, "alice", "p", "agent", agent_roles, Some(site)).await;
        let token = token(&store, "alice", "p", "client", RoleSet::all(), None).await;
        let url = serve(
            ServerConfig {
                code_dir: code_dir.clone(),
                rate_limits: hpcsera_server::config::RateLimits {
                    rate_limit_per_second: 0,
                    auth_failures_per_minute: opts.auth_failures_per_minute,
                },
                leases: hpcsera_server::config::Leases {
                    lease_seconds: opts.lease_seconds,
                    reaper_interval: Duration::from_millis(500),
                    ..Default::default()
                },
                ..Default::default()
            },
            store.clone(),
        )
        .await;
        let token_file = dir.path().join("agent.token");
        std::fs::write(&token_file, format!("{agent_token}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let work = dir.path().join("work");
        let config = dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "server_url = {url:?}\ntoken_file = {:?}\nsite = {site:?}\nwork_dir = {:?}\n\
                 [poll]\nlong_poll_seconds = 5\nstatus_interval_seconds = 1\nidle_interval_seconds = 1\n\
                 [limits]\nmax_active_jobs = {max_active_jobs}\n{}\n{}[batch]\npreset = {:?}\n{}\n{job_types}",
                token_file.display().to_string(),
                work.display().to_string(),
                opts.agent_limits,
                if opts.agent_approval.is_empty() {
                    String::new()
                } else {
                    format!("[approval]\n{}\n", opts.agent_approval)
                },
                if slurm() { "slurm" } else { "local" },
                opts.batch_extra,
            ),
        )
        .unwrap();
        let client = Client::new(&url, &token).unwrap();
        let mut env = Env {
            dir,
            url,
            site: site.to_string(),
            token,
            client,
            store,
            db_url,
            code_dir,
            work,
            config,
            agent: None,
            leftovers_expected: false,
        };
        env.start_agent();
        let started = Instant::now();
        while env
            .client
            .job_types(site)
            .await
            .map(|t| t.is_empty())
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the agent never published its job types: {}",
                env.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        env
    }

    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        let child = tokio::process::Command::new(bin())
            .args(["agent", "--config"])
            .arg(&self.config)
            .env("HPCSERA_LOG", "info,hpcsera_agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    /// Stops the agent with SIGTERM, as an operator or systemd would; returns its exit status
    /// once it has ended (at most 30 s).
    pub async fn terminate_agent(&mut self) -> std::process::ExitStatus {
        let mut c = self.agent.take().expect("the agent runs");
        let pid = c.id().expect("the agent has a pid").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("the agent ends after SIGTERM")
            .unwrap()
    }

    /// Sends the agent a signal (`STOP`, `CONT`, …) by name.
    pub fn signal_agent(&self, signal: &str) {
        let pid = self.agent_pid().expect("the agent runs").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Whether a batch job of this test is still pending or running: in Slurm's queue, or
    /// (local adapter) its process alive.
    pub fn batch_job_active(&self, batch_id: &str) -> bool {
        if slurm() {
            let state = squeue(&["-o", "%T", "-j", batch_id]);
            !(state.is_empty()
                || state == "CANCELLED"
                || state == "COMPLETED"
                || state == "COMPLETING"
                || state == "FAILED")
        } else {
            let pid =
                std::fs::read_to_string(self.work.join(".local-batch").join(batch_id).join("pid"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next().map(str::to_string));
            pid.is_some_and(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|st| !st.contains(") Z "))
            })
        }
    }

    /// Kills the agent with SIGKILL, as a crash would.
    pub async fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            c.start_kill().unwrap();
            c.wait().await.unwrap();
        }
    }

    /// The running agent's process id.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().and_then(|c| c.id())
    }

    /// The peak resident memory (`VmHWM`) of the running agent, in bytes.
    pub fn agent_peak_rss(&self) -> u64 {
        let pid = self.agent_pid().expect("the agent runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Asserts that `job` completed, showing its message and the agent's log otherwise.
    pub fn assert_completed(&self, job: &Job) {
        assert_eq!(
            job.status,
            JobStatus::Completed,
            "{}: {:?}\n{}",
            job.id,
            job.message,
            self.agent_log()
        );
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Runs the real binary; returns (success, stdout, stderr).
    pub async fn hpcsera(&self, args: &[&str]) -> (bool, String, String) {
        self.hpcsera_env(args, &[]).await
    }

    /// [`Env::hpcsera`] with more environment variables.
    pub async fn hpcsera_env(
        &self,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> (bool, String, String) {
        let out = tokio::process::Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .env("HPCSERA_URL", &self.url)
            .env("HPCSERA_TOKEN", &self.token)
            .env("HPCSERA_DATABASE_URL", &self.db_url)
            .env("HPCSERA_CODE_DIR", &self.code_dir)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `hpcsera code push PATH`; the digest is the last line of stdout.
    pub async fn push(&self, path: &Path) -> String {
        let (ok, out, err) = self
            .hpcsera(&["code", "push", path.to_str().unwrap()])
            .await;
        assert!(ok, "code push failed: {err}");
        out.lines().last().unwrap_or_default().trim().to_string()
    }

    pub async fn decide(&self, verb: &str, id: &str, user: &str, reason: &str) -> (bool, String) {
        let (ok, out, err) = self
            .hpcsera(&[
                "admin",
                "code",
                verb,
                id,
                "--project",
                "p",
                "--user",
                user,
                "--reason",
                reason,
            ])
            .await;
        (ok, format!("{out}{err}"))
    }

    /// The first `operation_done` or `operation_failed` event of job `id` after event
    /// `after`, waiting up to 60 s; `what` names the operation if it never comes.
    pub async fn operation_ack(&self, id: &str, after: i64, what: &str) -> JobEvent {
        let started = Instant::now();
        loop {
            let ev = self.client.events(id, after).await.unwrap();
            if let Some(e) = ev
                .into_iter()
                .find(|e| e.kind == "operation_done" || e.kind == "operation_failed")
            {
                return e;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} never acknowledged: {}",
                self.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_for(
        &self,
        id: &str,
        pred: impl Fn(JobStatus) -> bool,
        what: &str,
    ) -> hpcsera_api_types::Job {
        self.wait_for_within(id, pred, what, Duration::from_secs(90))
            .await
    }

    /// [`Env::wait_for`], failing after `limit`.
    pub async fn wait_for_within(
        &self,
        id: &str,
        pred: impl Fn(JobStatus) -> bool,
        what: &str,
        limit: Duration,
    ) -> hpcsera_api_types::Job {
        let started = Instant::now();
        loop {
            let j = self.client.get_job(id).await.unwrap();
            if pred(j.status) {
                return j;
            }
            assert!(
                started.elapsed() < limit,
                "job {id} never became {what} (is {}): agent log:\n{}",
                j.status,
                self.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits a job of `job_type` at this set-up's site with `params` (a JSON object).
    pub async fn submit_job(&self, job_type: &str, params: serde_json::Value) -> Job {
        let job = hpcsera_api_types::NewJob {
            site: self.site.clone(),
            job_type: job_type.into(),
            parameters: params.as_object().cloned().unwrap_or_default(),
            resources: Default::default(),
            metadata: None,
            callback_url: None,
        };
        self.client.submit(&job, None).await.unwrap()
    }

    /// Waits until the agent has reported the HPC-side digest of code bundle `id`.
    pub async fn wait_hpc_digest(&self, id: &str) -> hpcsera_api_types::CodeBundle {
        let started = Instant::now();
        loop {
            let b = self.client.code_status(id).await.unwrap();
            if b.hpc_sha256.is_some() {
                return b;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the agent never reported a digest of {id}: agent log:\n{}",
                self.agent_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until job `id` is in the batch system: `submitted` or `running`.
    pub async fn wait_submitted(&self, id: &str) -> hpcsera_api_types::Job {
        self.wait_for(
            id,
            |s| s == JobStatus::Submitted || s == JobStatus::Running,
            "submitted",
        )
        .await
    }
}

impl Env {
    /// Says that the test leaves batch jobs on purpose: its end cancels them without failing.
    pub fn expect_leftover_batch_jobs(&mut self) {
        self.leftovers_expected = true;
    }

    /// Cancels every job of the project that has not ended and waits until each has: the
    /// way a test that leaves jobs running on purpose ends cleanly.
    pub async fn cancel_unfinished_jobs(&self) {
        let page = self
            .client
            .list_jobs(&hpcsera_client::JobQuery {
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        for j in page.jobs.iter().filter(|j| !j.status.is_terminal()) {
            let _ = self
                .client
                .operation(&j.id, hpcsera_api_types::Operation::Cancel)
                .await;
            self.wait_for(&j.id, JobStatus::is_terminal, "ended").await;
        }
    }

    /// This test's batch jobs that are still pending or running: Slurm jobs whose work
    /// directory is below this test's work directory (other users of the same Slurm are never
    /// touched), or the local adapter's live processes. `(id, state)`.
    pub fn leftover_batch_jobs(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if slurm() {
            let Ok(q) = std::process::Command::new("squeue")
                .args(["-h", "-o", "%i|%T|%Z"])
                .output()
            else {
                return out;
            };
            for line in String::from_utf8_lossy(&q.stdout).lines() {
                let mut f = line.splitn(3, '|');
                let (Some(id), Some(state), Some(dir)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let done = matches!(state, "COMPLETED" | "COMPLETING" | "CANCELLED" | "FAILED");
                if !done && Path::new(dir.trim()).starts_with(&self.work) {
                    out.push((id.to_string(), state.to_string()));
                }
            }
        } else if let Ok(rd) = std::fs::read_dir(self.work.join(".local-batch")) {
            for e in rd.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if self.batch_job_active(&id) {
                    out.push((id, "running".into()));
                }
            }
        }
        out
    }

    /// Cancels this test's batch jobs (see [`Env::leftover_batch_jobs`]); returns them.
    pub fn cancel_leftover_batch_jobs(&self) -> Vec<(String, String)> {
        let left = self.leftover_batch_jobs();
        for (id, _) in &left {
            if slurm() {
                let _ = std::process::Command::new("scancel").arg(id).status();
            } else if let Some(pid) =
                std::fs::read_to_string(self.work.join(".local-batch").join(id).join("pid"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<i32>().ok())
            {
                // The local adapter starts each job in a process group of its own.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        left
    }
}

/// The end of every test: the agent is stopped, then every batch job the test left is
/// cancelled (on every path, a failing test too). Unless the test failed already or said it
/// leaves jobs ([`Env::expect_leftover_batch_jobs`]), it fails when it left any (after a
/// short grace for jobs that are ending) or when its queue does not become empty.
impl Drop for Env {
    fn drop(&mut self) {
        if let Some(c) = self.agent.as_mut() {
            let _ = c.start_kill();
            for _ in 0..200 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let grace = Instant::now();
        while !self.leftover_batch_jobs().is_empty() && grace.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(200));
        }
        let left = self.cancel_leftover_batch_jobs();
        let strict = !self.leftovers_expected && !std::thread::panicking();
        if !left.is_empty() {
            eprintln!("the test left batch jobs; cancelled them: {left:?}");
        }
        let started = Instant::now();
        loop {
            let still = self.leftover_batch_jobs();
            if still.is_empty() {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                if !std::thread::panicking() {
                    panic!("batch jobs of this test are still queued: {still:?}");
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if strict && !left.is_empty() {
            panic!("the test left batch jobs running (now cancelled): {left:?}");
        }
    }
}
