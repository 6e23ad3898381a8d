//! Accepting and refusing the jobs the server hands over.
//!
//! A job is checked against the agent's own config (the authority: job type, parameters,
//! resources),
//! journaled, and its claim confirmed to the server **before** anything runs. A job the
//! agent will not run is refused: it ends `failed` with the reason.
//!
//! This module must never start a sub-job: that is [`super::steps`]'s work.

use super::agent::Agent;
use super::error::JobError;
use super::job::{fit, Running, Step, Stream};
use crate::env::{job_dir, JobContext};
use hpcsera_api_types::{FieldError, Job, JobStatus, JobUpdate, SubJobState, SubJobStatus};

/// `field: problem; …`.
fn problems(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.problem))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Agent {
    /// Takes a job the poll handed over: prepare, journal, confirm; or refuse it.
    pub(super) async fn accept(&mut self, job: Job) {
        let id = job.id.clone();
        let run = match self.prepare(&job) {
            Ok(run) => run,
            Err(e) => return self.refuse(&job, &e).await,
        };
        // Journal first, then confirm the claim; only then does anything run.
        if let Err(e) = self.journal.record_accepted(&id) {
            tracing::error!(job = %id, error = %e, "cannot journal the job; leaving it to be offered again");
            return;
        }
        let confirm = JobUpdate {
            status: Some(JobStatus::Dispatched),
            ..Default::default()
        };
        if let Err(e) = self.client.update_job(&id, &confirm).await {
            tracing::warn!(job = %id, error = %e, "cannot confirm the claim; the server will offer it again");
            // A record left behind is harmless: the next start asks the server about every
            // journaled job and forgets those that are not with this agent.
            if let Err(e) = self.journal.forget(&id) {
                tracing::warn!(job = %id, error = %e, "cannot forget the unconfirmed job; the next start will");
            }
            return;
        }
        tracing::info!(job = %id, job_type = %run.job.job_type, "accepted");
        self.jobs.insert(id, run);
    }

    /// Builds the running state of a job the server handed over, after checking it against
    /// the agent's own config.
    pub(super) fn prepare(&self, job: &Job) -> Result<Running, JobError> {
        let jt = self
            .cfg
            .job_type(&job.job_type)
            .cloned()
            .ok_or_else(|| JobError::UnknownJobType(job.job_type.clone()))?;
        let params = jt
            .validate_parameters(&job.parameters)
            .map_err(|errs| JobError::Parameters(problems(&errs)))?;
        let resources = jt
            .validate_resources(&job.resources)
            .map_err(|errs| JobError::Resources(problems(&errs)))?;
        let ctx = JobContext {
            job_id: job.id.clone(),
            job_type: job.job_type.clone(),
            site: self.cfg.site.clone(),
            job_dir: job_dir(&self.cfg.work_dir, &job.id)?,
        };
        let jt_len = jt.sub_jobs.len();
        let sub_states = jt
            .sub_jobs
            .iter()
            .map(|s| SubJobState {
                name: s.name.clone(),
                status: SubJobStatus::Pending,
                batch_job_id: None,
                exit_code: None,
                message: None,
                granted_resources: None,
            })
            .collect();
        Ok(Running {
            reported: job.status,
            job: job.clone(),
            jt,
            params,
            resources,
            ctx,
            index: 0,
            step: Step::Start,
            sub_states,
            out: Stream::default(),
            err: Stream::default(),
            code: None,
            skipped: Vec::new(),
            started_ms: super::job::now_ms(),
            sub_times: vec![(None, None); jt_len],
            uploaded: Vec::new(),
        })
    }

    /// Fails a job the agent will not run (unknown job type, parameters its config refuses).
    pub(super) async fn refuse(&self, job: &Job, why: &JobError) {
        let message = fit(&why.to_string());
        tracing::warn!(job = %job.id, message = %message, "refusing a job");
        let end = JobUpdate {
            status: Some(JobStatus::Failed),
            message: Some(message),
            ..Default::default()
        };
        if let Err(e) = self.client.update_job(&job.id, &end).await {
            tracing::warn!(job = %job.id, error = %e, "cannot report the refusal");
        }
    }
}
