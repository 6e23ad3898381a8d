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

//!
//! # Modules
//!
//! | module | owns |
//! |---|---|
//! | `agent` | the [`Agent`], its loop and where it may stop (safe points) |
//! | `accept` | accepting and refusing the jobs a poll hands over |
//! | `resume` | resuming journaled jobs after a restart; cleaning up lost and released jobs |
//! | `steps` | sub-job steps: start/collect a login step, start/track a batch step |
//! | `arrays` | sweep members submitted together as batch-system job arrays |
//! | `code` | code bundles: quarantine and verification, preparation for a job |
//! | `approval` | the check of signed approvals (`[approval] require_signature`) before unpacking |
//! | `output` | output streams sent by offset |
//! | `results` | a job's end: result files, final report, journal |
//! | `provenance` | a job's signed manifest, made at its end before the final report |
//! | `files` | reading job files without following links |
//! | `operations` | cancel, hold, release |
//! | `job`, `error` | the running job's state; the error types |
//!
//! The modules are `impl Agent` blocks over the state in `agent` and `job`; none
//! imports another's methods, and the free helpers go one way only (steps and resume use
//! output's, steps uses code's, output and results use files'), so there is no import circle.

mod accept;
mod agent;
mod approval;
mod arrays;
mod code;
mod error;
mod files;
mod job;
mod operations;
mod output;
mod provenance;
mod results;
mod resume;
mod steps;

pub use agent::Agent;
pub use error::{AgentError, CodeError, JobError, OperationError};
pub use job::{fit, MAX_MESSAGE_BYTES};
pub use output::output_files;
