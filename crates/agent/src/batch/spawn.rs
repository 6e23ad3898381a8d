//! The one way the agent starts a process: [`spawn`]. Batch-system commands ([`super::exec`]),
//! the local adapter's batch scripts ([`super::local`]) and login sub-jobs
//! ([`super::login`]) all go through it, so each gets the same treatment:
//!
//! * an argv (no shell is added here), refused when an entry holds a NUL byte;
//! * the environment scrubbed of inherited `HPCSERA_*` variables, then exactly the entries
//!   given (checked to be passable at all);
//! * stdin from `/dev/null`; stdout and stderr piped, or into files created without
//!   following a link an earlier sub-job may have left ([`create_no_follow`]);
//! * optionally its own process group (so a cancel or timeout reaches its children) and
//!   killed when its handle is dropped.
//!
//! This module must never build shell text, and never pass a job's data other than as the
//! environment entries it is given.

use super::BatchError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Where a child's stdout or stderr goes.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// A pipe the caller reads.
    Piped,
    /// A file, created (truncated) with [`create_no_follow`].
    File(PathBuf),
}

/// What to start.
#[derive(Debug, Clone)]
pub(crate) struct Spawn<'a> {
    /// `argv[0]` is the program.
    pub argv: Vec<OsString>,
    /// The only `HPCSERA_*` variables the child sees.
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    pub stdout: Output,
    pub stderr: Output,
    /// Start it as the leader of a new process group.
    pub own_group: bool,
    /// Kill it when the [`tokio::process::Child`] is dropped.
    pub kill_on_drop: bool,
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

/// Creates (truncating) a file for a child's output without following a symlink at its end
/// (`O_NOFOLLOW`: a link is `ELOOP`), so output never lands where a link points.
pub(crate) fn create_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn stdio(o: &Output) -> Result<Stdio, BatchError> {
    Ok(match o {
        Output::Piped => Stdio::piped(),
        Output::File(p) => Stdio::from(create_no_follow(p).map_err(|source| BatchError::Io {
            context: "cannot create",
            path: p.clone(),
            source,
        })?),
    })
}

/// Starts a process as described in the module docs.
pub(crate) fn spawn(s: &Spawn<'_>) -> Result<tokio::process::Child, BatchError> {
    let (program, args) = s
        .argv
        .split_first()
        .ok_or_else(|| BatchError::Invalid("empty command".into()))?;
    if let Some(bad) = s.argv.iter().find(|a| a.as_encoded_bytes().contains(&0)) {
        return Err(BatchError::Invalid(format!(
            "argument {bad:?} contains a NUL byte"
        )));
    }
    check_env(s.env)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdio(&s.stdout)?)
        .stderr(stdio(&s.stderr)?)
        .kill_on_drop(s.kill_on_drop);
    if s.own_group {
        cmd.process_group(0);
    }
    if let Some(dir) = s.cwd {
        cmd.current_dir(dir);
    }
    // A stale `HPCSERA_PARAM_x` in the agent's own environment must not leak in.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HPCSERA_") {
            cmd.env_remove(&k);
        }
    }
    cmd.envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.spawn().map_err(|source| BatchError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })
}
