//! Resuming after a restart, and cleaning up jobs the server no longer gives this agent.
//!
//! On start the journal is reconciled with the batch system (pending submissions resolved
//! by job name, see [`crate::journal`]); then each journaled job is read again from the
//! server and resumed where it was: done sub-jobs are skipped, a submitted batch job is
//! tracked again, the rest run (a login sub-job cut short by the restart runs again). Output
//! continues at the offsets the server has. Nothing is submitted twice.
//!
//! A job the server gave up on (`lost`), or released while the agent held it, is stopped
//! (its batch job cancelled) and, when lost, the cleanup is recorded in its events.
//!
//! This module must never submit a batch job itself: resumed jobs go back to
//! [`super::steps`].

use super::agent::Agent;
use super::error::AgentError;
use super::job::{fit, End, Running, Step};
use super::output::{output_files, skip_sent};
use crate::batch::BatchJobRef;
use crate::journal::{JobRecord, Phase};
use hpcsera_api_types::{Job, JobStatus, SubJobStatus};

impl Agent {
    /// Picks up where a previous run left off. A journal that cannot be read or written
    /// here stops the agent: it would not know what it already submitted.
    pub(super) async fn resume(&mut self) -> Result<(), AgentError> {
        let rec = self.journal.reconcile(self.adapter.as_ref()).await?;
        if !rec.adopted.is_empty() || !rec.not_submitted.is_empty() || !rec.finished.is_empty() {
            tracing::info!(
                adopted = rec.adopted.len(),
                finished = rec.finished.len(),
                not_submitted = rec.not_submitted.len(),
                "reconciled the journal with the batch system"
            );
        }
        for record in self.journal.jobs()? {
            let job = match self.client.get_job(&record.job_id).await {
                Ok(j) => j,
                Err(e) if e.status() == Some(404) => {
                    self.journal.forget(&record.job_id)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if job.status == JobStatus::Lost {
                self.clean_up_lost(&record).await;
                self.journal.forget(&record.job_id)?;
                continue;
            }
            if job.status.is_terminal() || !job.status.is_with_agent() {
                self.journal.forget(&record.job_id)?;
                continue;
            }
            self.resume_job(job, &record).await?;
        }
        Ok(())
    }

    /// The server gave up on the job while the agent was away: its batch jobs must not run
    /// on unseen.
    async fn clean_up_lost(&self, record: &JobRecord) {
        let mut done = Vec::new();
        for (sub, s) in &record.sub_jobs {
            if s.phase != Phase::Submitted {
                continue;
            }
            let Some(batch) = &s.batch_id else { continue };
            done.push(match self.adapter.cancel(batch).await {
                Ok(()) => format!("cancelled batch job {batch} (sub-job {sub})"),
                Err(e) => format!("cannot cancel batch job {batch} (sub-job {sub}): {e}"),
            });
        }
        self.cleaned_up(&record.job_id, done).await;
    }

    /// Resumes one journaled job that is still with this agent.
    async fn resume_job(&mut self, job: Job, record: &JobRecord) -> Result<(), AgentError> {
        let mut run = match self.prepare(&job) {
            Ok(r) => r,
            Err(e) => {
                self.refuse(&job, &e).await;
                self.journal.forget(&record.job_id)?;
                return Ok(());
            }
        };
        let failed_before = place(&mut run, record);
        for sub in run.jt.sub_jobs.iter().take(run.index + 1) {
            let (o, e) = output_files(&run.ctx.job_dir, &sub.name);
            run.out.files.push((o, 0));
            run.err.files.push((e, 0));
        }
        // The server has what we sent before (the job says how much, readable with
        // GET_Job): continue from there, at the matching file positions.
        run.out.server_len = job.output_bytes.stdout;
        run.err.server_len = job.output_bytes.stderr;
        skip_sent(&mut run.out);
        skip_sent(&mut run.err);
        tracing::info!(job = %run.job.id, sub_job = run.index, "resumed a job from the journal");
        if let Step::Batch { batch, .. } = &run.step {
            // Killed between the submit and its report: the server does not know the batch
            // job yet. Report it now (the submit itself is not repeated).
            if job.batch_job_id.as_deref() != Some(batch.id.as_str()) {
                let id = batch.id.clone();
                run.set_sub(SubJobStatus::Submitted, Some(id.clone()), None, None);
                self.report(&mut run, JobStatus::Submitted, Some(id)).await;
            }
        }
        match failed_before {
            Some(end) => self.finish(&mut run, end).await,
            None => {
                self.jobs.insert(run.job.id.clone(), run);
            }
        }
        Ok(())
    }

    /// Stops a job the server says this agent no longer holds, and forgets it.
    pub(super) async fn drop_released(&mut self, id: &str) {
        let Some(run) = self.jobs.remove(id) else {
            return;
        };
        tracing::warn!(job = %id, "the server no longer gives this job to us; stopping it");
        let stopped = self.stop_step(&run).await;
        let done = match (&run.step, stopped) {
            (Step::Batch { batch, .. }, Ok(())) => {
                vec![format!("cancelled batch job {}", batch.id)]
            }
            (Step::Batch { batch, .. }, Err(e)) => {
                vec![format!("cannot cancel batch job {}: {e}", batch.id)]
            }
            (Step::Login(_), _) => vec!["stopped its login sub-job".to_string()],
            (Step::Start, _) => Vec::new(),
        };
        self.cleaned_up(id, done).await;
        // A record left behind is harmless (the next start asks the server and forgets
        // it); not worth stopping this cycle's other jobs for.
        if let Err(e) = self.journal.forget(id) {
            tracing::warn!(job = %id, error = %e, "cannot forget a released job; the next start will");
        }
    }

    /// Logs what the agent did about a job the server no longer gives it and, when the job is
    /// `lost`, records it in the job's events (`POST /agent/jobs/{id}/cleanup`).
    async fn cleaned_up(&self, id: &str, done: Vec<String>) {
        let what = if done.is_empty() {
            "nothing of it was running".to_string()
        } else {
            done.join("; ")
        };
        tracing::warn!(job = %id, done = %what, "cleaned up a job the server no longer gives to this agent");
        let message = fit(&format!(
            "the agent came back after the job was lost: {what}"
        ));
        match self.client.agent_cleanup(id, &message).await {
            Ok(_) => {}
            // Not lost (deleted, or given to another agent): nothing to record.
            Err(e) if matches!(e.status(), Some(404 | 409)) => {
                tracing::info!(job = %id, error = %e, "the cleanup is not recorded on the server")
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "cannot record the cleanup"),
        }
    }
}

/// Moves a resumed job to where its journal record says it is: past the sub-jobs that
/// succeeded, onto a submitted batch job, or at the first one to (re)run. `Some` when a
/// sub-job failed while the agent was down: the job ends with that.
fn place(run: &mut Running, record: &JobRecord) -> Option<End> {
    for (i, sub) in run.jt.sub_jobs.iter().enumerate() {
        run.index = i;
        match record.sub_jobs.get(&sub.name) {
            Some(s) if s.phase == Phase::Done && s.exit_code == Some(0) => {
                run.index = i + 1;
            }
            Some(s) if s.phase == Phase::Done => {
                return Some(End {
                    status: JobStatus::Failed,
                    exit_code: s.exit_code,
                    message: format!(
                        "sub-job {} {} (while the agent was down)",
                        sub.name,
                        s.outcome.as_deref().unwrap_or("failed")
                    ),
                });
            }
            Some(s) if s.phase == Phase::Submitted => {
                if let Some(id) = &s.batch_id {
                    run.step = Step::Batch {
                        batch: BatchJobRef::new(id.clone(), s.exit_file.clone()),
                        unknown: 0,
                    };
                }
                return None;
            }
            _ => return None,
        }
    }
    None
}
