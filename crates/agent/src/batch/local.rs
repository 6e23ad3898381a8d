//! The local adapter: batch scripts run as child processes of the agent, for a machine
//! without a batch system.
//!
//! Each job gets a batch id `local-<uuid>` and a state directory `<state_dir>/<id>/` with:
//!
//! * `name` – the job name (for [`BatchAdapter::find_by_name`]);
//! * `pid` – `<pid> <start time>` of the job's process (the start time, from
//!   `/proc/<pid>/stat`, guards against a recycled pid);
//! * `exit` – the exit status, written by a small fixed `/bin/sh` wrapper when the script
//!   ends (the script and the file are the wrapper's positional arguments, never text);
//! * `cancelled` – written before the agent signals the job.
//!
//! These files, not the agent's memory, are the truth, so a new adapter instance (an agent
//! restart) still tells running from finished. Each job runs in its own process group;
//! cancel sends SIGTERM to the group and SIGKILL five seconds later if it is still there.
//! Local jobs start at once, so hold and release are [`BatchError::Unsupported`].
//!
//! This module must never signal a process it did not start (the start time guards the pid),
//! and starts processes only through `batch::spawn`.

use super::spawn::{check_env, spawn, Output, Spawn};
use super::{BatchAdapter, BatchError, BatchJobRef, BatchState, BoxFuture, SubmitRequest};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Records the script's exit status; `$1` is the exit file, the rest the command.
const WRAPPER: &str = r#"exit_file=$1; shift; "$@"; rc=$?; printf '%s\n' "$rc" >"$exit_file.tmp" && mv -f -- "$exit_file.tmp" "$exit_file"; exit "$rc""#;

/// How long after SIGTERM a cancelled job gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub struct LocalAdapter {
    state_dir: PathBuf,
    spawned: AtomicU64,
    /// Fired when a job this instance started ends (its reaper saw the process exit, after
    /// the wrapper wrote the exit file): the agent asks for the states at once instead of
    /// at its next cycle (see [`BatchAdapter::end_signal`]).
    ended: Arc<Notify>,
}

fn write_atomic(path: &Path, text: &str) -> Result<(), BatchError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(BatchError::io("cannot write", &tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(BatchError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(BatchError::io("cannot write", path))
}

/// The start time (clock ticks since boot) of a live, non-zombie process.
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X") | None) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn is_local_id(id: &str) -> bool {
    id.strip_prefix("local-")
        .is_some_and(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_hexdigit()))
}

/// What the state files say about a job.
struct JobFiles {
    pid: Option<(i32, u64)>,
    exit: Option<i32>,
    cancelled: bool,
}

impl LocalAdapter {
    /// An adapter keeping its state under `state_dir` (created if missing).
    pub fn new(state_dir: impl Into<PathBuf>) -> Result<LocalAdapter, BatchError> {
        let state_dir = state_dir.into();
        std::fs::create_dir_all(&state_dir).map_err(BatchError::io("cannot create", &state_dir))?;
        Ok(LocalAdapter {
            state_dir,
            spawned: AtomicU64::new(0),
            ended: Arc::new(Notify::new()),
        })
    }

    fn job_state_dir(&self, id: &str) -> Result<PathBuf, BatchError> {
        if !is_local_id(id) {
            return Err(BatchError::NotFound { id: id.into() });
        }
        Ok(self.state_dir.join(id))
    }

    fn read_files(&self, dir: &Path) -> JobFiles {
        let pid = std::fs::read_to_string(dir.join("pid")).ok().and_then(|s| {
            let mut it = s.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        });
        JobFiles {
            pid,
            exit: crate::script::read_exit_file(&dir.join("exit")),
            cancelled: dir.join("cancelled").exists(),
        }
    }

    fn alive(pid: Option<(i32, u64)>) -> bool {
        pid.is_some_and(|(pid, start)| process_start_time(pid) == Some(start))
    }

    fn state_of(&self, id: &str) -> BatchState {
        let Ok(dir) = self.job_state_dir(id) else {
            return BatchState::Unknown;
        };
        if !dir.is_dir() {
            return BatchState::Unknown;
        }
        let mut f = self.read_files(&dir);
        if f.exit.is_none() && !Self::alive(f.pid) {
            // It may have finished between the two reads.
            f = self.read_files(&dir);
            if f.exit.is_none() {
                if f.cancelled {
                    return BatchState::Cancelled;
                }
                if f.pid.is_none() {
                    return BatchState::Unknown;
                }
                return BatchState::Failed {
                    exit_code: None,
                    reason: "the job's process ended without recording an exit status \
                             (killed from outside?)"
                        .into(),
                };
            }
        }
        match f.exit {
            None => BatchState::Running,
            Some(_) if f.cancelled => BatchState::Cancelled,
            Some(0) => BatchState::Completed { exit_code: 0 },
            Some(code) => BatchState::Failed {
                exit_code: Some(code),
                reason: format!("the job script exited with code {code}"),
            },
        }
    }

    async fn do_submit(&self, req: &SubmitRequest) -> Result<String, BatchError> {
        check_env(&req.env)?;
        let id = format!("local-{}", uuid::Uuid::new_v4().simple());
        let dir = self.state_dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(BatchError::io("cannot create", &dir))?;
        write_atomic(&dir.join("name"), &req.job_name)?;
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&req.script_path)
                .map_err(BatchError::io("cannot read", &req.script_path))?
                .permissions()
                .mode()
                & 0o100
                != 0
        };
        let mut argv: Vec<OsString> = vec![
            "/bin/sh".into(),
            "-c".into(),
            WRAPPER.into(),
            "hpcsera-local".into(),
            dir.join("exit").into(),
        ];
        if !executable {
            argv.push("/bin/sh".into());
        }
        argv.push(req.script_path.clone().into());
        let spawned = spawn(&Spawn {
            argv,
            env: &req.env,
            cwd: Some(&req.work_dir),
            stdout: Output::File(req.stdout_path.clone()),
            stderr: Output::File(req.stderr_path.clone()),
            // Its own group: a cancel signals the script and everything it started.
            own_group: true,
            // It outlives the agent (a restarted agent finds it by its state files).
            kill_on_drop: false,
        });
        if !matches!(spawned, Err(BatchError::Invalid(_))) {
            self.spawned.fetch_add(1, Ordering::SeqCst);
        }
        let mut child = spawned?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| BatchError::Invalid("the job's process has no pid".into()))?;
        // The start time of a process that already exited is unknown; 0 never matches a
        // live process, which is right.
        let start = process_start_time(pid).unwrap_or(0);
        write_atomic(&dir.join("pid"), &format!("{pid} {start}\n"))?;
        // Reap the child when it ends (after a restart, init does that), and say so: the
        // wrapper wrote the exit file before it exited, so the state is final now.
        let ended = self.ended.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            ended.notify_one();
        });
        tracing::info!(%id, pid, job_name = %req.job_name, "started local batch job");
        Ok(id)
    }

    async fn do_cancel(&self, id: &str) -> Result<(), BatchError> {
        let dir = self.job_state_dir(id)?;
        if !dir.is_dir() {
            return Err(BatchError::NotFound { id: id.into() });
        }
        let f = self.read_files(&dir);
        if f.exit.is_some() {
            return Ok(()); // already finished
        }
        write_atomic(&dir.join("cancelled"), "cancelled\n")?;
        if let Some((pid, start)) = f.pid.filter(|p| Self::alive(Some(*p))) {
            // SAFETY: kill(2) with a negative pid signals that process group; the pid is a
            // group leader we started (checked by its start time).
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            tokio::spawn(async move {
                tokio::time::sleep(KILL_GRACE).await;
                if process_start_time(pid) == Some(start) {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                }
            });
        }
        Ok(())
    }
}

impl BatchAdapter for LocalAdapter {
    fn name(&self) -> &str {
        "local"
    }

    fn submit<'a>(&'a self, req: &'a SubmitRequest) -> BoxFuture<'a, Result<String, BatchError>> {
        Box::pin(self.do_submit(req))
    }

    fn status_all<'a>(
        &'a self,
        jobs: &'a [BatchJobRef],
    ) -> BoxFuture<'a, Result<HashMap<String, BatchState>, BatchError>> {
        Box::pin(async move {
            Ok(jobs
                .iter()
                .map(|j| (j.id.clone(), self.state_of(&j.id)))
                .collect())
        })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(self.do_cancel(id))
    }

    fn hold<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async {
            Err(BatchError::Unsupported {
                adapter: "local".into(),
                operation: "hold (local jobs start at once)",
            })
        })
    }

    fn release<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async {
            Err(BatchError::Unsupported {
                adapter: "local".into(),
                operation: "release (local jobs start at once)",
            })
        })
    }

    fn find_by_name<'a>(
        &'a self,
        job_names: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, BatchError>> {
        Box::pin(async move {
            // No guard for empty `job_names` needed: a directory read spawns nothing, and
            // no names find nothing.
            let entries = std::fs::read_dir(&self.state_dir)
                .map_err(BatchError::io("cannot read", &self.state_dir))?;
            let mut found = HashMap::new();
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !is_local_id(&id) {
                    continue;
                }
                if let Ok(name) = std::fs::read_to_string(e.path().join("name")) {
                    if job_names.contains(&name) {
                        found.insert(name, id);
                    }
                }
            }
            Ok(found)
        })
    }

    fn commands_spawned(&self) -> u64 {
        self.spawned.load(Ordering::SeqCst)
    }

    fn end_signal(&self) -> Option<Arc<Notify>> {
        Some(self.ended.clone())
    }
}
