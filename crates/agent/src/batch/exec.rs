//! Running one batch-system command: argv (no shell), a clean `HPCSERA_*` environment, a
//! timeout, and a counter of spawned commands.

use super::BatchError;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
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
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Removes inherited `HPCSERA_*` variables so a child only sees the ones the agent sets for
/// this job (a stale `HPCSERA_PARAM_x` in the agent's own environment must not leak in).
pub(crate) fn scrub_env(cmd: &mut tokio::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HPCSERA_") {
            cmd.env_remove(&k);
        }
    }
}

/// Checks that environment entries can be passed to a process at all.
pub(crate) fn check_env(env: &[(String, String)]) -> Result<(), BatchError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(BatchError::Invalid(format!(
                "{k:?} is not a valid environment variable name"
            )));
        }
        if v.contains('\0') {
            return Err(BatchError::Invalid(format!(
                "the value of {k} contains a NUL byte, which no process can receive"
            )));
        }
    }
    Ok(())
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
        let program = argv
            .first()
            .ok_or_else(|| BatchError::Invalid("empty command".into()))?;
        check_env(env)?;
        if let Some(bad) = argv.iter().find(|a| a.contains('\0')) {
            return Err(BatchError::Invalid(format!(
                "argument {bad:?} contains a NUL byte"
            )));
        }
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        scrub_env(&mut cmd);
        cmd.envs(
            env.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let command = display_argv(argv);
        self.counter.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(%command, "running batch command");
        let mut child = cmd.spawn().map_err(|source| BatchError::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.take(MAX_COMMAND_OUTPUT).read_to_end(&mut out).await;
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
        match tokio::time::timeout(self.timeout, work).await {
            Ok((status, out, err)) => {
                let status = status.map_err(|source| BatchError::Spawn {
                    program: program.clone(),
                    source,
                })?;
                Ok(CommandOutput {
                    code: status.code(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            }
            // The child is killed on drop (kill_on_drop).
            Err(_) => Err(BatchError::Timeout {
                command,
                seconds: self.timeout.as_secs(),
            }),
        }
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
