//! Sweep members as batch-system job arrays: before each job moves on by itself, the members
//! of one sweep that are about to submit the same batch sub-job (same job type, sub-job and
//! resources) are submitted together, one array per `[batch] array_size` of them.
//!
//! The journal protocol is the single submit's, per member: every member's intent names the
//! array and its task index (all written before the one submit), then each member's task id
//! is recorded. After that, each member is an ordinary batch step: tracked by its task id in
//! the cycle's one status query, cancelled, held and released by it (`scancel 123_4`).
//!
//! Groups of one, adapters without arrays (`local`) and `[batch] arrays = false` leave the
//! members to the one-by-one path in `steps`. This module must never spawn a process.

use super::agent::Agent;
use super::error::JobError;
use super::job::{End, Running, Step};
use super::steps::batch_request;
use crate::batch::array::ArrayRequest;
use crate::batch::{BatchJobRef, SubmitRequest, DEFAULT_ARRAY_SIZE};
use crate::env::array_job_name;
use hpcsera_api_types::{JobStatus, SubJobKind, SubJobStatus};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A member ready to go into an array: its job, its rendered submission, its exit file.
type Member = (Running, SubmitRequest, PathBuf);

/// What members must share to go into one array: sweep, job type, sub-job index, resources.
type GroupKey = (String, String, usize, String);

impl Agent {
    /// Submits the members waiting to start a batch sub-job as arrays, by sweep, sub-job
    /// and resources (see the module docs).
    pub(super) async fn submit_arrays(&mut self) {
        if !self.adapter.supports_arrays() || self.cfg.batch.arrays == Some(false) {
            return;
        }
        let size = self
            .cfg
            .batch
            .array_size
            .unwrap_or(DEFAULT_ARRAY_SIZE)
            .max(1) as usize;
        let mut groups: BTreeMap<GroupKey, Vec<(u32, String)>> = BTreeMap::new();
        for (id, run) in &self.jobs {
            let (Step::Start, Some(sweep), Some(sub)) = (&run.step, &run.job.sweep, run.sub())
            else {
                continue;
            };
            if sub.kind != SubJobKind::Batch {
                continue;
            }
            let resources =
                serde_json::to_string(&run.resources.overlay(&sub.resources)).unwrap_or_default();
            let key = (
                sweep.clone(),
                run.job.job_type.clone(),
                run.index,
                resources,
            );
            let index = run.job.sweep_index.unwrap_or(0);
            groups.entry(key).or_default().push((index, id.clone()));
        }
        for (_, mut members) in groups {
            members.sort();
            let ids: Vec<String> = members.into_iter().map(|(_, id)| id).collect();
            for chunk in ids.chunks(size).filter(|c| c.len() > 1) {
                self.submit_array_of(chunk).await;
            }
        }
    }

    /// Prepares, journals, submits and records one array of the jobs `ids`.
    async fn submit_array_of(&mut self, ids: &[String]) {
        let mut ready: Vec<Member> = Vec::new();
        for id in ids {
            let Some(mut run) = self.jobs.remove(id) else {
                continue;
            };
            match self.ready_member(&mut run).await {
                Ok(Some((req, exit))) => ready.push((run, req, exit)),
                // Nothing left to run (cannot happen for a batch step): the normal path.
                Ok(None) => {
                    self.jobs.insert(id.clone(), run);
                }
                Err(e) => self.finish(&mut run, End::from(e)).await,
            }
        }
        let ready = self.journal_intents(ready).await;
        if ready.len() < 2 {
            // One left: it goes alone, by the normal path (its intent is rewritten there).
            for (run, _, _) in ready {
                self.jobs.insert(run.job.id.clone(), run);
            }
            return;
        }
        let first = &ready[0].0;
        let sub = first.sub_name();
        let name = array_job_name(&first.job.id, &sub);
        let req = ArrayRequest {
            dir: self.cfg.work_dir.join(".arrays").join(&name),
            job_name: name.clone(),
            members: ready.iter().map(|(_, r, _)| r.clone()).collect(),
            throttle: self.cfg.batch.array_throttle,
        };
        let result = self.adapter.submit_array(&req).await;
        match result {
            Ok(task_ids) => self.submitted(ready, &sub, task_ids).await,
            Err(source) => {
                tracing::warn!(array = %name, error = %source, "cannot submit the job array");
                let message = JobError::Submit {
                    sub_job: sub.clone(),
                    source,
                }
                .to_string();
                for (mut run, _, _) in ready {
                    self.finish(&mut run, End::failed(message.clone())).await;
                }
            }
        }
    }

    /// The member's code, directory and output files, and its rendered submission.
    async fn ready_member(
        &mut self,
        run: &mut Running,
    ) -> Result<Option<(SubmitRequest, PathBuf)>, JobError> {
        let Some((sub, o, e)) = self.ready_next(run).await? else {
            return Ok(None);
        };
        batch_request(run, &sub, o, e).map(Some)
    }

    /// Journals each member's intent (naming the array and its task index) before the
    /// submit; a member whose intent cannot be written fails (a restart could submit it
    /// twice otherwise) and leaves the array.
    async fn journal_intents(&mut self, ready: Vec<Member>) -> Vec<Member> {
        let mut kept: Vec<Member> = Vec::with_capacity(ready.len());
        let Some(first) = ready
            .first()
            .map(|(r, _, _)| (r.job.id.clone(), r.sub_name()))
        else {
            return kept;
        };
        let name = array_job_name(&first.0, &first.1);
        for (mut run, req, exit) in ready {
            let index = kept.len() as u32;
            let sub = run.sub_name();
            match self
                .journal
                .record_array_intent(&run.job.id, &sub, &name, &exit, index)
            {
                Ok(()) => kept.push((run, req, exit)),
                Err(e) => {
                    self.finish(&mut run, JobError::JournalIntent(e).into())
                        .await
                }
            }
        }
        kept
    }

    /// Records each member's task id (journal, state, report) and gives it back to the
    /// cycle as a batch step.
    async fn submitted(&mut self, ready: Vec<Member>, sub: &str, task_ids: Vec<String>) {
        tracing::info!(members = ready.len(), sub_job = %sub, first = ?task_ids.first(), "submitted a job array");
        for ((mut run, _, exit), id) in ready.into_iter().zip(task_ids) {
            if let Err(e) = self.journal.record_submitted(&run.job.id, sub, &id) {
                // Not fatal: the intent names the array and the task index.
                tracing::error!(job = %run.job.id, error = %e, "cannot journal the task id");
            }
            run.set_sub(SubJobStatus::Submitted, Some(id.clone()), None, None);
            run.step = Step::Batch {
                batch: BatchJobRef::new(id.clone(), Some(exit)),
                unknown: 0,
            };
            self.report(&mut run, JobStatus::Submitted, Some(id)).await;
            self.jobs.insert(run.job.id.clone(), run);
        }
    }
}
