//! The runtime's error types, one per layer of consequence.
//!
//! * [`AgentError`]: the agent cannot go on (start-up, the work-dir lock, the server
//!   unreachable for a whole cycle). Returned by [`super::Agent`]'s public methods.
//! * [`JobError`]: one job cannot go on; it ends `failed` with the error's text as its
//!   message (what the job's owner reads, so the texts are written for people).
//! * [`CodeError`]: a code bundle could not be verified or prepared; a [`JobError`] when a
//!   job needed it.
//! * [`OperationError`]: an operation (hold, release) could not be carried out; the text is
//!   the `operationDone` message.
//!
//! This module owns no behaviour; it must never log or talk to the server.

use crate::batch::login::LoginError;
use crate::batch::BatchError;
use crate::env::EnvError;
use crate::journal::JournalError;
use crate::script::ScriptError;
use crate::unpack::UnpackError;
use hpcsera_client::ClientError;
use std::path::PathBuf;

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "another agent is running with work directory {0} (lock file {0}/.hpcsera-agent.lock)"
    )]
    Locked(PathBuf),
    #[error("cannot talk to the server: {0}")]
    Server(#[from] ClientError),
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("batch system: {0}")]
    Batch(#[from] BatchError),
    /// `[approval] require_signature` is on, but its allowed-signers file cannot be used.
    #[error("[approval] allowed_signers: {0}")]
    Approval(String),
    #[error("{0}")]
    Key(#[from] crate::provenance::KeyError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// `map_err` helper for [`AgentError::Io`].
pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = context.into();
    move |source| AgentError::Io { context, source }
}

/// Why one job cannot go on (or is refused). The text is the job's message.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("this agent has no job type {0:?}")]
    UnknownJobType(String),
    /// The agent's own config refused the parameters (`field: problem; …`).
    #[error("the agent refused the parameters: {0}")]
    Parameters(String),
    /// The agent's own config refused the resources (`field: problem; …`).
    #[error("the agent refused the resources: {0}")]
    Resources(String),
    #[error("{0}")]
    Env(#[from] EnvError),
    /// Boxed: a code error is large and rare.
    #[error("{0}")]
    Code(Box<CodeError>),
    #[error("cannot create the job directory: {0}")]
    JobDir(std::io::Error),
    #[error("sub-job {0} has no command")]
    NoCommand(String),
    #[error("sub-job {0} has no script")]
    NoScript(String),
    #[error("{0}")]
    Script(#[from] ScriptError),
    #[error("cannot journal the submission: {0}")]
    JournalIntent(JournalError),
    #[error("cannot journal the end of sub-job {sub_job}: {source}")]
    JournalDone {
        sub_job: String,
        #[source]
        source: JournalError,
    },
    #[error("submitting {sub_job} failed: {source}")]
    Submit {
        sub_job: String,
        #[source]
        source: BatchError,
    },
    #[error("login sub-job {sub_job} did not finish: {source}")]
    LoginTask {
        sub_job: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("login sub-job {sub_job}: {source}")]
    Login {
        sub_job: String,
        #[source]
        source: LoginError,
    },
    #[error("batch sub-job {sub_job} (batch job {batch_id}) failed: {reason}")]
    BatchFailed {
        sub_job: String,
        batch_id: String,
        reason: String,
    },
    #[error("the batch system no longer knows batch job {0} and it left no exit code")]
    BatchLost(String),
}

impl From<CodeError> for JobError {
    fn from(e: CodeError) -> JobError {
        JobError::Code(Box::new(e))
    }
}

/// Why a code bundle could not be verified (quarantine) or prepared for a job.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("{0:?} is not a code bundle id")]
    NotAnId(String),
    #[error("parameter {param}: {id:?} is not a code bundle id")]
    ParamNotAnId { param: String, id: String },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Download(#[source] ClientError),
    #[error("cannot keep {}: {source}", path.display())]
    Keep {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Report(#[source] ClientError),
    #[error("code bundle {id} ({param}) is {status}, not approved; refusing to run it")]
    NotApproved {
        id: String,
        param: String,
        status: String,
    },
    #[error("cannot check code bundle {id} ({param}): {source}")]
    Check {
        id: String,
        param: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot fetch code bundle {id} ({param}): {source}")]
    Fetch {
        id: String,
        param: String,
        #[source]
        source: ClientError,
    },
    #[error(
        "code bundle {id} ({param}): the downloaded bytes have SHA-256 {sha}, not the approved \
         digest; refusing to unpack"
    )]
    Digest {
        id: String,
        param: String,
        sha: String,
    },
    #[error("code bundle {id} ({param}): the approval is refused, {reason}; refusing to unpack")]
    Approval {
        id: String,
        param: String,
        reason: String,
    },
    #[error("code bundle {id} ({param}) refused: {source}")]
    Unpack {
        id: String,
        param: String,
        #[source]
        source: UnpackError,
    },
    #[error("unpacking code bundle {id} failed: {source}")]
    UnpackTask {
        id: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why an operation on a job could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("the agent does not run this job")]
    NotRunning,
    #[error("the job is not in the batch system now; only batch jobs can be held or released")]
    NotInBatch,
    #[error("{0}")]
    Batch(#[from] BatchError),
}
