//! Sub-job steps: start the next sub-job (a login step as a child task, a batch step
//! rendered, journaled and submitted), collect a finished login step, track a batch step
//! through the states of ONE status query for all jobs, and stop what a job runs now.
//!
//! The journal protocol around a batch submission (intent, submit, batch id) is kept here;
//! see [`crate::journal`]. Each journal write says below what a failure of it means.
//!
//! This module must never spawn a process itself (the batch module does) nor send output
//! or results (see [`super::output`], [`super::results`]).

use super::agent::Agent;
use super::code::add_code_env;
use super::error::JobError;
use super::job::{End, LoginTask, Running, Step};
use super::output::output_files;
use crate::batch::login::{run_login, LoginRequest};
use crate::batch::{BatchError, BatchJobRef, BatchState, SubmitRequest};
use crate::config::SubJobConfig;
use crate::env::{batch_env, batch_job_name, job_env};
use crate::script::{modules_file_path, render_batch_script};
use hpcsera_api_types::{JobStatus, JobUpdate, SubJobKind, SubJobStatus};
use std::path::PathBuf;
use std::time::Duration;

/// After this many status queries in a row that do not know a batch job, it is given up.
const UNKNOWN_LIMIT: u32 = 3;

impl Agent {
    /// Moves every job on: one status query for all batch jobs (when `track`; a wake-up by
    /// a login step's end asks no batch system), then each job's next steps, then output.
    pub(super) async fn advance(&mut self, finish_login: bool, track: bool) {
        if track {
            self.track_batch_jobs().await;
        }
        // Sweep members that are about to submit together go as job arrays first.
        self.submit_arrays().await;
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            let Some(mut run) = self.jobs.remove(&id) else {
                continue;
            };
            loop {
                match self.step(&mut run, finish_login).await {
                    // A login step ended well: start the next sub-job in this cycle.
                    Ok(None) if matches!(run.step, Step::Start) => continue,
                    // `--once` (cron): a login step just started is waited for in this run,
                    // which would otherwise exit before collecting it, every time.
                    Ok(None) if finish_login && matches!(run.step, Step::Login(_)) => continue,
                    Ok(None) => {
                        self.send_output(&mut run).await;
                        self.jobs.insert(id, run);
                    }
                    Ok(Some(end)) | Err(end) => self.finish(&mut run, end).await,
                }
                break;
            }
        }
    }

    /// Asks the batch system about all batch steps at once and applies their states.
    async fn track_batch_jobs(&mut self) {
        let refs: Vec<BatchJobRef> = self
            .jobs
            .values()
            .filter_map(|r| match &r.step {
                Step::Batch { batch, .. } => Some(batch.clone()),
                _ => None,
            })
            .collect();
        if refs.is_empty() {
            return;
        }
        let states = match self.adapter.status_all(&refs).await {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!(error = %e, "batch status query failed; trying again next cycle");
                return;
            }
        };
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            let Some(mut run) = self.jobs.remove(&id) else {
                continue;
            };
            let state = match &run.step {
                Step::Batch { batch, .. } => states.get(&batch.id).cloned(),
                _ => None,
            };
            if state.is_some() {
                self.report_granted(&mut run).await;
            }
            let outcome = match state {
                Some(s) => self.batch_state(&mut run, s).await,
                None => Ok(()),
            };
            match outcome {
                Err(end) => self.finish(&mut run, end).await,
                Ok(()) => {
                    self.jobs.insert(id, run);
                }
            }
        }
    }

    /// Starts the next sub-job or collects a finished login sub-job. `Ok(Some)` ends the job.
    async fn step(&mut self, run: &mut Running, finish_login: bool) -> Result<Option<End>, End> {
        match &run.step {
            Step::Start => self.start_next(run).await,
            Step::Login(task) if task.ended() || finish_login => {
                self.collect_login(run).await.map(|()| None)
            }
            Step::Login(_) | Step::Batch { .. } => Ok(None),
        }
    }

    /// Prepares the job's code (once), then starts sub-job `run.index`; `Ok(Some)` when
    /// there is none left (the job completed).
    async fn start_next(&mut self, run: &mut Running) -> Result<Option<End>, End> {
        let Some((sub, o, e)) = self.ready_next(run).await? else {
            return Ok(Some(End {
                status: JobStatus::Completed,
                exit_code: Some(0),
                message: "all sub-jobs succeeded".into(),
            }));
        };
        match sub.kind {
            SubJobKind::Login => self.start_login(run, &sub, o, e).await?,
            SubJobKind::Batch => self.start_batch(run, &sub, o, e).await?,
        }
        Ok(None)
    }

    /// Prepares the job's code (once), its directory and the output files of sub-job
    /// `run.index`; that sub-job with its stdout and stderr paths, or `None` when all are done.
    pub(super) async fn ready_next(
        &mut self,
        run: &mut Running,
    ) -> Result<Option<(SubJobConfig, PathBuf, PathBuf)>, JobError> {
        if run.code.is_none() {
            let code = self.prepare_code(run).await?;
            run.code = Some(code);
        }
        let Some(sub) = run.sub().cloned() else {
            return Ok(None);
        };
        let (o, e) = output_files(&run.ctx.job_dir, &sub.name);
        if run.out.files.len() <= run.index {
            run.out.files.push((o.clone(), 0));
            run.err.files.push((e.clone(), 0));
        }
        std::fs::create_dir_all(&run.ctx.job_dir).map_err(JobError::JobDir)?;
        Ok(Some((sub, o, e)))
    }

    /// Starts a login sub-job as a child task (see [`run_login`]).
    async fn start_login(
        &mut self,
        run: &mut Running,
        sub: &SubJobConfig,
        stdout_path: PathBuf,
        stderr_path: PathBuf,
    ) -> Result<(), JobError> {
        let command = sub
            .login_command()
            .ok_or_else(|| JobError::NoCommand(sub.name.clone()))?;
        let mut env = job_env(&run.ctx, &sub.name, &run.params)?;
        add_code_env(&mut env, run.code.as_deref());
        let req = LoginRequest {
            command,
            env,
            work_dir: run.ctx.job_dir.clone(),
            timeout: Duration::from_secs(sub.timeout_seconds),
            stdout_path,
            stderr_path,
            max_output_bytes: self.cfg.limits.max_output_bytes,
        };
        let intent = format!("login:{}", sub.name);
        if let Err(e) = self
            .journal
            .record_intent(&run.job.id, &sub.name, &intent, None)
        {
            // Not fatal: a login step without an intent is run again after a restart,
            // exactly as one with an intent whose end was not recorded.
            tracing::warn!(job = %run.job.id, sub_job = %sub.name, error = %e, "cannot journal the login sub-job");
        }
        let after_batch = run.jt.sub_jobs[..run.index]
            .iter()
            .any(|s| s.kind == SubJobKind::Batch);
        let to = if after_batch {
            JobStatus::Completing
        } else {
            JobStatus::Staging
        };
        // The task says when the process ended, so the next sub-job starts at once (see the
        // hand-off in `agent`'s module docs), not at the next cycle.
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, wake) = (ended.clone(), self.wake.clone());
        let handle = tokio::spawn(async move {
            let outcome = run_login(&req).await;
            flag.store(true, std::sync::atomic::Ordering::Release);
            wake.notify_one();
            outcome
        });
        run.step = Step::Login(LoginTask { handle, ended });
        // Reported once the step runs: the report's round trip is not on the hand-off's path.
        run.set_sub(SubJobStatus::Running, None, None, None);
        self.report(run, to, None).await;
        Ok(())
    }

    /// Renders, journals (intent), submits and journals (batch id) a batch sub-job.
    async fn start_batch(
        &mut self,
        run: &mut Running,
        sub: &SubJobConfig,
        stdout_path: PathBuf,
        stderr_path: PathBuf,
    ) -> Result<(), JobError> {
        let (req, exit_file) = batch_request(run, sub, stdout_path, stderr_path)?;
        let name = req.job_name.clone();
        let rendered_exit = exit_file;
        // Fatal for the job: without the intent a restart could submit it a second time.
        self.journal
            .record_intent(&run.job.id, &sub.name, &name, Some(&rendered_exit))
            .map_err(JobError::JournalIntent)?;
        let id = self
            .adapter
            .submit(&req)
            .await
            .map_err(|source| JobError::Submit {
                sub_job: sub.name.clone(),
                source,
            })?;
        if let Err(e) = self.journal.record_submitted(&run.job.id, &sub.name, &id) {
            // Not fatal: the intent names the batch job, so a restart finds it by name
            // (reconciliation adopts it) and does not submit it again.
            tracing::error!(job = %run.job.id, error = %e, "cannot journal the batch id");
        }
        tracing::info!(job = %run.job.id, sub_job = %sub.name, batch_id = %id, "submitted");
        run.set_sub(SubJobStatus::Submitted, Some(id.clone()), None, None);
        run.step = Step::Batch {
            batch: BatchJobRef::new(id.clone(), Some(rendered_exit)),
            unknown: 0,
        };
        self.report(run, JobStatus::Submitted, Some(id)).await;
        Ok(())
    }

    /// Waits for the login task (finished, or `--once`) and applies its outcome; `Err` ends
    /// the job.
    async fn collect_login(&mut self, run: &mut Running) -> Result<(), End> {
        let Step::Login(LoginTask { handle, .. }) = std::mem::replace(&mut run.step, Step::Start)
        else {
            return Ok(());
        };
        let name = run.sub_name();
        let outcome = handle.await.map_err(|source| JobError::LoginTask {
            sub_job: name.clone(),
            source,
        })?;
        match outcome {
            Ok(o) if o.success() => {
                // Fatal for the job: the journal would not know this step ran, and a restart
                // would run it a second time.
                self.journal
                    .record_done(&run.job.id, &name, Some(0), "succeeded")
                    .map_err(|source| JobError::JournalDone {
                        sub_job: name.clone(),
                        source,
                    })?;
                run.set_sub(SubJobStatus::Completed, None, Some(0), None);
                run.index += 1;
                Ok(())
            }
            Ok(o) => {
                let m = format!("login sub-job {name} {}", o.describe());
                run.set_sub(SubJobStatus::Failed, None, o.exit_code, Some(m.clone()));
                Err(End {
                    status: JobStatus::Failed,
                    exit_code: o.exit_code,
                    message: m,
                })
            }
            Err(source) => {
                let e = JobError::Login {
                    sub_job: name,
                    source,
                };
                run.set_sub(SubJobStatus::Failed, None, None, Some(e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Journals the end of a batch sub-job. A failure is logged, not fatal: the journal
    /// still has the batch id, so a restart asks the batch system (and the exit file) again
    /// and learns the same end.
    fn journal_batch_end(&self, run: &Running, sub_job: &str, code: Option<i32>, outcome: &str) {
        if let Err(e) = self
            .journal
            .record_done(&run.job.id, sub_job, code, outcome)
        {
            tracing::warn!(job = %run.job.id, sub_job, error = %e, "cannot journal the end of the batch sub-job");
        }
    }

    /// Applies a batch job's state; `Err` ends the job.
    async fn batch_state(&mut self, run: &mut Running, state: BatchState) -> Result<(), End> {
        let name = run.sub_name();
        let batch_id = match &run.step {
            Step::Batch { batch, .. } => batch.id.clone(),
            _ => return Ok(()),
        };
        match state {
            BatchState::Pending | BatchState::Held => Ok(()),
            BatchState::Running => {
                run.set_sub(SubJobStatus::Running, Some(batch_id), None, None);
                self.report(run, JobStatus::Running, None).await;
                Ok(())
            }
            BatchState::Completed { exit_code: 0 } => {
                self.journal_batch_end(run, &name, Some(0), "completed");
                run.set_sub(SubJobStatus::Completed, Some(batch_id), Some(0), None);
                self.drain_output(run).await;
                run.index += 1;
                run.step = Step::Start;
                Ok(())
            }
            BatchState::Completed { exit_code }
            | BatchState::Failed {
                exit_code: Some(exit_code),
                ..
            } => {
                self.journal_batch_end(run, &name, Some(exit_code), "failed");
                let m = format!(
                    "batch sub-job {name} (batch job {batch_id}) exited with code {exit_code}"
                );
                run.set_sub(
                    SubJobStatus::Failed,
                    Some(batch_id),
                    Some(exit_code),
                    Some(m.clone()),
                );
                Err(End {
                    status: JobStatus::Failed,
                    exit_code: Some(exit_code),
                    message: m,
                })
            }
            BatchState::Failed {
                exit_code: None,
                reason,
            } => {
                self.journal_batch_end(run, &name, None, &reason);
                let e = JobError::BatchFailed {
                    sub_job: name,
                    batch_id: batch_id.clone(),
                    reason,
                };
                run.set_sub(
                    SubJobStatus::Failed,
                    Some(batch_id),
                    None,
                    Some(e.to_string()),
                );
                Err(e.into())
            }
            BatchState::Cancelled => {
                self.journal_batch_end(run, &name, None, "cancelled");
                run.set_sub(SubJobStatus::Cancelled, Some(batch_id.clone()), None, None);
                Err(End {
                    status: JobStatus::Cancelled,
                    exit_code: None,
                    message: format!("batch job {batch_id} was cancelled in the batch system"),
                })
            }
            BatchState::Unknown => {
                if let Step::Batch { unknown, .. } = &mut run.step {
                    *unknown += 1;
                    if *unknown >= UNKNOWN_LIMIT {
                        return Err(JobError::BatchLost(batch_id).into());
                    }
                }
                Ok(())
            }
        }
    }

    /// Reports a status change, forward only (a login step after a batch step does not move
    /// the job back), with the sub-job states and a new batch id.
    pub(super) async fn report(
        &self,
        run: &mut Running,
        to: JobStatus,
        batch_job_id: Option<String>,
    ) {
        let status = (to != run.reported && run.reported.can_transition_to(to)).then_some(to);
        if status.is_none() && batch_job_id.is_none() {
            return;
        }
        let update = JobUpdate {
            status,
            batch_job_id,
            sub_jobs: Some(run.sub_states.clone()),
            ..Default::default()
        };
        match self.client.update_job(&run.job.id, &update).await {
            Ok(j) => run.reported = j.status,
            Err(e) => tracing::warn!(job = %run.job.id, error = %e, "status report failed"),
        }
    }

    /// Reports what the batch system granted the current batch job (as the cycle's one
    /// status query saw it), when that changed: with the sub-job states and as the job's
    /// `grantedResources`. A failed report is tried again at the next change only.
    async fn report_granted(&self, run: &mut Running) {
        let Step::Batch { batch, .. } = &run.step else {
            return;
        };
        let Some(granted) = self.adapter.granted(&batch.id) else {
            return;
        };
        let Some(state) = run.sub_states.get_mut(run.index) else {
            return;
        };
        if state.granted_resources.as_ref() == Some(&granted) {
            return;
        }
        state.granted_resources = Some(granted.clone());
        let update = JobUpdate {
            granted_resources: Some(granted),
            sub_jobs: Some(run.sub_states.clone()),
            ..Default::default()
        };
        if let Err(e) = self.client.update_job(&run.job.id, &update).await {
            tracing::warn!(job = %run.job.id, error = %e, "cannot report the granted resources");
        }
    }

    /// Stops what a job runs now (its batch job or login process).
    pub(super) async fn stop_step(&self, run: &Running) -> Result<(), BatchError> {
        match &run.step {
            Step::Batch { batch, .. } => self.adapter.cancel(&batch.id).await,
            Step::Login(task) => {
                task.handle.abort();
                Ok(())
            }
            Step::Start => Ok(()),
        }
    }
}

/// A batch sub-job rendered for submission: its script (written now), environment,
/// resources and options; and its exit file.
pub(super) fn batch_request(
    run: &Running,
    sub: &SubJobConfig,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
) -> Result<(SubmitRequest, PathBuf), JobError> {
    let script = sub
        .script
        .as_deref()
        .ok_or_else(|| JobError::NoScript(sub.name.clone()))?;
    let rendered = render_batch_script(&run.ctx.job_dir, &sub.name, script)?;
    let mut env = batch_env(&run.ctx, &sub.name, &run.params, &rendered.exit_file)?;
    add_code_env(&mut env, run.code.as_deref());
    if run.jt.provenance.record_modules {
        let file = modules_file_path(&run.ctx.job_dir, &sub.name);
        env.push((
            "HPCSERA_MODULES_FILE".into(),
            file.to_string_lossy().into_owned(),
        ));
    }
    // The adapter adds `[batch] submit_options` itself (once).
    let req = SubmitRequest {
        script_path: rendered.path,
        work_dir: run.ctx.job_dir.clone(),
        job_name: batch_job_name(&run.job.id, &sub.name),
        env,
        resources: run.resources.overlay(&sub.resources),
        options: sub.options.clone(),
        stdout_path,
        stderr_path,
    };
    Ok((req, rendered.exit_file))
}
