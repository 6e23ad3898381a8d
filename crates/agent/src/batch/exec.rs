//! Running one batch-system command: argv (no shell), a clean `HPCSERA_*` environment (both
//! through `batch::spawn`), a timeout, and a counter of spawned commands.
//!
//! This module must never run a job's script: only the batch system's own commands.

use super::spawn::{spawn, Output, Spawn};
use super::BatchError;
use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// At most this many bytes of a command's stdout are read (a `qstat -f` of many jobs is
/// large, but not this large).
const MAX_COMMAND_OUTPUT: u64 = 64 * 1024 * 1024;

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// stdout was longer than the bound and was cut.
    pub truncated: bool,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs batch-system commands and counts them.
#[derive(Debug, Clone)]
pub struct Exec {
    counter: Arc<AtomicU64>,
    timeout: Duration,
}

impl Exec {
    pub fn new(timeout: Duration) -> Self {
        Exec {
            counter: Arc::new(AtomicU64::new(0)),
            timeout,
        }
    }

    /// How many commands were spawned.
    pub fn count(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// Runs `argv` with extra `env`, in `cwd` if given, and waits for it (killed after the
    /// timeout). A non-zero exit is not an error here: parsers decide (some commands print
    /// useful output and still fail for an unknown id).
    pub async fn run(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<CommandOutput, BatchError> {
        let counter = &self.counter;
        run_bounded(argv, env, cwd, self.timeout, MAX_COMMAND_OUTPUT, || {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .await
    }

    /// Like [`Exec::run`] but a non-zero exit is an error.
    pub async fn run_ok(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<CommandOutput, BatchError> {
        let out = self.run(argv, env, cwd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(failed(argv, &out))
        }
    }
}

/// Runs `argv` (through `batch::spawn`: no shell, a clean `HPCSERA_*` environment) and waits
/// for it, killed after `timeout`; at most `max_stdout` bytes of stdout and 1 MiB of stderr
/// are read (`truncated` says when stdout was cut). `spawned` is called once a process was
/// tried (not for a request refused before that).
pub(crate) async fn run_bounded(
    argv: &[String],
    env: &[(String, String)],
    cwd: Option<&Path>,
    timeout: Duration,
    max_stdout: u64,
    spawned: impl FnOnce(),
) -> Result<CommandOutput, BatchError> {
    let program = argv
        .first()
        .ok_or_else(|| BatchError::Invalid("empty command".into()))?;
    let command = display_argv(argv);
    tracing::debug!(%command, "running a command");
    let child = spawn(&Spawn {
        argv: argv.iter().map(OsString::from).collect(),
        env,
        cwd,
        stdout: Output::Piped,
        stderr: Output::Piped,
        own_group: false,
        kill_on_drop: true,
    });
    if !matches!(child, Err(BatchError::Invalid(_))) {
        spawned();
    }
    let mut child = child?;
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        // The pipe is closed as soon as enough is read: a command with more to say gets
        // EPIPE instead of blocking (and holding stderr open) until the timeout.
        let read_out = async {
            if let Some(s) = stdout {
                let _ = s.take(max_stdout + 1).read_to_end(&mut out).await;
            }
        };
        let read_err = async {
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(1024 * 1024).read_to_end(&mut err).await;
            }
        };
        tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((status, mut out, err)) => {
            let status = status.map_err(|source| BatchError::Spawn {
                program: program.clone(),
                source,
            })?;
            let truncated = out.len() as u64 > max_stdout;
            out.truncate(max_stdout as usize);
            Ok(CommandOutput {
                code: status.code(),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                truncated,
            })
        }
        // The child is killed on drop (kill_on_drop).
        Err(_) => Err(BatchError::Timeout {
            command,
            seconds: timeout.as_secs(),
        }),
    }
}

/// The error for a command that exited non-zero.
pub(crate) fn failed(argv: &[String], out: &CommandOutput) -> BatchError {
    BatchError::CommandFailed {
        command: display_argv(argv),
        status: match out.code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".into(),
        },
        stderr: excerpt(out.stderr.trim(), 2000),
    }
}

/// argv for messages (each entry quoted when it needs it; for people, not for a shell).
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,%@+".contains(c))
            {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
