//! Running a login sub-job: a command on the login node, with a timeout.
//!
//! The command is an argv run without a shell, or — only when the config gives `shell = "…"`
//! explicitly — that text run with `/bin/sh -c`. Either way parameters arrive only as
//! environment variables ([`crate::env`]). The process runs in the job's work dir, in its own
//! process group; on timeout the whole group gets SIGTERM, then SIGKILL after a grace period,
//! and the result is [`LoginError::TimedOut`]. stdout and stderr go to files, each bounded to
//! `max_output_bytes` (the rest is read and dropped, so the process never blocks on a full
//! pipe).
//!
//! This module must never add a shell the config did not ask for, and starts processes only
//! through `batch::spawn`.

use super::spawn::{create_no_follow, spawn, Output, Spawn};
use super::BatchError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long a timed-out process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// How long output is still drained after the process ended (a background grandchild may
/// hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How a login sub-job's command is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginCommand {
    /// argv, run directly.
    Argv(Vec<String>),
    /// Shell text for `/bin/sh -c`, configured explicitly.
    Shell(String),
}

#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub command: LoginCommand,
    pub env: Vec<(String, String)>,
    /// The job's work dir (the process's current directory).
    pub work_dir: PathBuf,
    pub timeout: Duration,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    /// At most this many bytes of each stream are written to its file.
    pub max_output_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// The exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub duration: Duration,
}

impl LoginOutcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// A one-line description for a status report.
    pub fn describe(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(0), _) => "succeeded".into(),
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended without an exit status".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {seconds} s; the process group was killed")]
    TimedOut { seconds: u64 },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<BatchError> for LoginError {
    fn from(e: BatchError) -> LoginError {
        match e {
            BatchError::Spawn { program, source } => LoginError::Spawn { program, source },
            BatchError::Io {
                context,
                path,
                source,
            } => LoginError::Io {
                context,
                path,
                source,
            },
            BatchError::Invalid(m) => LoginError::Invalid(m),
            other => LoginError::Invalid(other.to_string()),
        }
    }
}

/// Copies `r` into `path`, keeping at most `max` bytes; returns whether it was truncated.
async fn capture<R: AsyncRead + Unpin>(
    mut r: R,
    path: PathBuf,
    max: u64,
) -> (bool, Option<String>) {
    // Never through a symlink an earlier sub-job may have left (O_NOFOLLOW: a link is ELOOP).
    let opened = create_no_follow(&path).map(tokio::fs::File::from_std);
    let mut file = match opened {
        Ok(f) => Some(f),
        Err(e) => {
            return (
                false,
                Some(format!("cannot create {}: {e}", path.display())),
            )
        }
    };
    let mut written: u64 = 0;
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = max.saturating_sub(written);
        let keep = (n as u64).min(room) as usize;
        if keep < n {
            truncated = true;
        }
        if keep > 0 {
            if let Some(f) = file.as_mut() {
                if f.write_all(&buf[..keep]).await.is_err() {
                    file = None;
                }
            }
            written += keep as u64;
        }
    }
    if let Some(mut f) = file {
        let _ = f.flush().await;
    }
    (truncated, None)
}

fn kill_group(pid: i32, sig: i32) {
    // SAFETY: kill(2) on the process group we created for this command (pid is its leader).
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// Runs a login sub-job (see the module docs).
pub async fn run_login(req: &LoginRequest) -> Result<LoginOutcome, LoginError> {
    let argv: Vec<OsString> = match &req.command {
        LoginCommand::Argv(argv) => argv.iter().map(OsString::from).collect(),
        LoginCommand::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.into()],
    };
    let program = argv.first().map(|p| p.to_string_lossy().into_owned());
    ensure_dir(&req.work_dir)?;
    let started = Instant::now();
    let mut child = spawn(&Spawn {
        argv,
        env: &req.env,
        cwd: Some(&req.work_dir),
        stdout: Output::Piped,
        stderr: Output::Piped,
        // Its own group: a timeout kills what it started too.
        own_group: true,
        kill_on_drop: true,
    })
    .map_err(LoginError::from)?;
    let program = program.unwrap_or_default();
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let max = req.max_output_bytes;
    let out = (child.stdout.take()).map(|s| tokio::spawn(capture(s, req.stdout_path.clone(), max)));
    let err = (child.stderr.take()).map(|s| tokio::spawn(capture(s, req.stderr_path.clone(), max)));
    let tasks = [out, err];
    let status = match tokio::time::timeout(req.timeout, child.wait()).await {
        Ok(status) => status.map_err(|source| LoginError::Spawn {
            program: program.clone(),
            source,
        })?,
        Err(_) => {
            stop_timed_out(&mut child, pid).await;
            for t in tasks.into_iter().flatten() {
                let _ = tokio::time::timeout(DRAIN_GRACE, t).await;
            }
            return Err(LoginError::TimedOut {
                seconds: req.timeout.as_secs(),
            });
        }
    };
    let truncated = drain(tasks).await;
    use std::os::unix::process::ExitStatusExt;
    Ok(LoginOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        stdout_truncated: truncated[0],
        stderr_truncated: truncated[1],
        duration: started.elapsed(),
    })
}

/// Kills a timed-out login process group: SIGTERM, then SIGKILL after [`KILL_GRACE`].
async fn stop_timed_out(child: &mut tokio::process::Child, pid: Option<i32>) {
    let Some(pid) = pid else {
        let _ = child.kill().await;
        return;
    };
    kill_group(pid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Whatever is left of the group (children that ignored SIGTERM).
    kill_group(pid, libc::SIGKILL);
}

type Capture = tokio::task::JoinHandle<(bool, Option<String>)>;

/// Waits (at most [`DRAIN_GRACE`] each) for the output captures; whether each was truncated.
async fn drain(tasks: [Option<Capture>; 2]) -> [bool; 2] {
    let mut truncated = [false, false];
    for (i, t) in tasks.into_iter().enumerate() {
        let Some(mut t) = t else { continue };
        match tokio::time::timeout(DRAIN_GRACE, &mut t).await {
            Ok(Ok((tr, problem))) => {
                truncated[i] = tr;
                if let Some(p) = problem {
                    tracing::warn!(problem = %p, "login sub-job output not kept");
                }
            }
            _ => t.abort(),
        }
    }
    truncated
}

fn ensure_dir(dir: &Path) -> Result<(), LoginError> {
    std::fs::create_dir_all(dir).map_err(|source| LoginError::Io {
        context: "cannot create the work dir",
        path: dir.to_path_buf(),
        source,
    })
}
