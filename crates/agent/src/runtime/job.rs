//! What the agent knows about one running job: its config, parameters, where it is in its
//! sub-jobs ([`Step`]), the sub-job states it reports, and its two output streams; and how
//! a job ends ([`End`]).
//!
//! Plain data with small helpers: this module must never do I/O, talk to the server or the
//! batch system, or touch the journal.

use super::error::JobError;
use crate::batch::login::{LoginError, LoginOutcome};
use crate::batch::BatchJobRef;
use crate::config::{JobTypeConfig, SubJobConfig};
use crate::env::JobContext;
use hpcsera_api_types::{Job, JobStatus, Resources, ResultFile, SubJobState, SubJobStatus};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use tokio::task::JoinHandle;

/// Longest message the agent reports (the server's smallest limit: `operationDone` messages;
/// status messages may have 64 KiB). Longer ones are cut, so no report is refused for its size.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Where a job is in its sub-jobs.
pub(super) enum Step {
    /// Sub-job `index` is next.
    Start,
    Login(LoginTask),
    Batch {
        batch: BatchJobRef,
        unknown: u32,
    },
}

/// A login step's task: [`crate::batch::login::run_login`] in a task of its own, which
/// marks itself `ended` and fires the agent's wake-up as the process's outcome is known.
pub(super) struct LoginTask {
    pub handle: JoinHandle<Result<LoginOutcome, LoginError>>,
    /// Set by the task just before it returns (and before it fires the wake-up), so that the
    /// woken loop sees it ended even while the task is still finishing.
    pub ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl LoginTask {
    /// Whether the outcome is ready (awaiting the handle then takes no time).
    pub fn ended(&self) -> bool {
        self.handle.is_finished() || self.ended.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// One output stream of a job: the concatenation of its sub-jobs' files.
#[derive(Default)]
pub(super) struct Stream {
    /// Bytes the server has.
    pub(super) server_len: u64,
    /// Files in sub-job order and how much of each was sent.
    pub(super) files: Vec<(PathBuf, u64)>,
    pub(super) truncated: bool,
    /// Files not read because they are links out of the job directory (by index).
    pub(super) refused: HashSet<usize>,
}

/// A job the agent runs.
pub(super) struct Running {
    pub(super) job: Job,
    pub(super) jt: JobTypeConfig,
    pub(super) params: Map<String, Value>,
    /// The job's resources as the agent's own config allows them (each batch sub-job puts
    /// its own on top).
    pub(super) resources: Resources,
    pub(super) ctx: JobContext,
    /// The sub-job that runs now or next.
    pub(super) index: usize,
    pub(super) step: Step,
    /// The status the server has (reports only move forward from it).
    pub(super) reported: JobStatus,
    pub(super) sub_states: Vec<SubJobState>,
    pub(super) out: Stream,
    pub(super) err: Stream,
    /// Unpacked code bundles: `(parameter, directory)`; filled before the first sub-job.
    pub(super) code: Option<Vec<(String, PathBuf)>>,
    /// What the agent refused to read (links out of the job directory), for the end message.
    pub(super) skipped: Vec<String>,
    /// When this agent took the job on (Unix ms; after a restart: when it resumed it).
    pub(super) started_ms: i64,
    /// When each sub-job started and ended (Unix ms), as far as this agent saw it.
    pub(super) sub_times: Vec<(Option<i64>, Option<i64>)>,
    /// The result files the server confirmed, with the SHA-256 it computed.
    pub(super) uploaded: Vec<ResultFile>,
}

impl Running {
    /// The sub-job that runs now or next (`None`: all are done).
    pub(super) fn sub(&self) -> Option<&SubJobConfig> {
        self.jt.sub_jobs.get(self.index)
    }

    /// The name of the current sub-job (empty when all are done).
    pub(super) fn sub_name(&self) -> String {
        self.sub().map(|s| s.name.clone()).unwrap_or_default()
    }

    /// Updates the reported state of the current sub-job; `None` keeps a field as it is.
    pub(super) fn set_sub(
        &mut self,
        status: SubJobStatus,
        batch_job_id: Option<String>,
        exit_code: Option<i32>,
        message: Option<String>,
    ) {
        if let Some(t) = self.sub_times.get_mut(self.index) {
            let now = now_ms();
            match status {
                SubJobStatus::Pending => {}
                SubJobStatus::Running | SubJobStatus::Submitted => {
                    t.0.get_or_insert(now);
                }
                SubJobStatus::Completed | SubJobStatus::Failed | SubJobStatus::Cancelled => {
                    t.0.get_or_insert(now);
                    t.1 = Some(now);
                }
            }
        }
        if let Some(s) = self.sub_states.get_mut(self.index) {
            s.status = status;
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
}

/// How a job ended.
pub(super) struct End {
    pub(super) status: JobStatus,
    pub(super) exit_code: Option<i32>,
    pub(super) message: String,
}

impl End {
    /// `failed` without an exit code, with the message given.
    pub(super) fn failed(message: impl Into<String>) -> End {
        End {
            status: JobStatus::Failed,
            exit_code: None,
            message: message.into(),
        }
    }
}

impl From<JobError> for End {
    fn from(e: JobError) -> End {
        End::failed(e.to_string())
    }
}

/// Now, in Unix milliseconds.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
