//! The agent's local journal: what it has submitted, so that a restart never submits a job
//! twice and never forgets one.
//!
//! One JSON file per hpcsera job, `<dir>/<job id>.json`, holding a record per sub-job. Every
//! change rewrites the file atomically: write `.<job id>.json.tmp`, fsync it, rename it over
//! the old file, fsync the directory. A crash leaves either the old or the new file, never a
//! torn one.
//!
//! The protocol around a batch submission:
//!
//! 1. [`Journal::record_intent`] (phase `submitting`, with the batch job name that carries
//!    the hpcsera job id) — *before* the submit command runs;
//! 2. submit;
//! 3. [`Journal::record_submitted`] with the batch id;
//! 4. later [`Journal::record_done`], and [`Journal::forget`] once the server has the result.
//!
//! After a crash between 1 and 3 the journal has an intent without a batch id.
//! [`Journal::reconcile`] asks the batch system, in one query, for jobs with those names
//! ([`BatchAdapter::find_by_name`]): a job found is adopted (its id recorded); a job whose
//! exit file exists ran and finished; only a job that is found nowhere is reported as
//! not submitted, for the caller to submit again.
//!
//! Sweep members submitted as one job array ([`crate::batch::array`]) each record an intent
//! naming the *array* and their task index, all before the array's one submit. After a crash
//! before the batch ids were recorded, the array is found by its name and each member adopts
//! its own task's id ([`BatchAdapter::array_task_id`]); an array found nowhere was never
//! submitted, and its members are submitted again (as a new array). So a kill -9 anywhere in
//! an array's submission never submits a member twice.
//!
//! This module owns the journal files; it must never submit or cancel anything (reconciliation
//! only asks the batch system by name) and never leave a torn file.

use crate::batch::{BatchAdapter, BatchError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal file {} is not valid: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("journal: job id {0:?} cannot be a file name")]
    BadJobId(String),
    #[error("journal: no intent recorded for job {job_id} sub-job {subjob}")]
    NoIntent { job_id: String, subjob: String },
    #[error("journal: reconciliation failed: {0}")]
    Batch(#[from] BatchError),
}

/// Where a sub-job is in the submission protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Intent recorded; the submit command may or may not have run.
    Submitting,
    /// The batch system accepted it (batch id known).
    Submitted,
    /// Finished (the outcome is recorded).
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubJobRecord {
    pub phase: Phase,
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The task index when the sub-job is submitted as part of a job array (`job_name` is
    /// then the array's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_index: Option<u32>,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub sub_jobs: BTreeMap<String, SubJobRecord>,
}

/// An intent without a batch id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingIntent {
    pub job_id: String,
    pub subjob: String,
    pub job_name: String,
    pub exit_file: Option<PathBuf>,
    /// Task index in the job array `job_name` names.
    pub array_index: Option<u32>,
}

/// A submitted, unfinished batch sub-job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSubmission {
    pub job_id: String,
    pub subjob: String,
    pub batch_id: String,
    pub exit_file: Option<PathBuf>,
}

/// What [`Journal::reconcile`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// Found in the batch system by name: (intent, batch id); now recorded as submitted.
    pub adopted: Vec<(PendingIntent, String)>,
    /// Not in the batch system any more, but its exit file shows it ran: (intent, code);
    /// now recorded as done.
    pub finished: Vec<(PendingIntent, i32)>,
    /// Found nowhere: never submitted. The caller submits these again.
    pub not_submitted: Vec<PendingIntent>,
}

pub struct Journal {
    dir: PathBuf,
    lock: Mutex<()>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io {
        context,
        path,
        source,
    }
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`; removes temp files a crash left.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Journal, JournalError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        for e in std::fs::read_dir(&dir)
            .map_err(io("cannot read", &dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".json.tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Journal {
            dir,
            lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, job_id: &str) -> Result<PathBuf, JournalError> {
        if !crate::env::is_safe_job_id(job_id) {
            return Err(JournalError::BadJobId(job_id.into()));
        }
        Ok(self.dir.join(format!("{job_id}.json")))
    }

    fn read(&self, path: &Path) -> Result<Option<JobRecord>, JournalError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| JournalError::Corrupt {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read", path)(e)),
        }
    }

    fn write(&self, rec: &JobRecord) -> Result<(), JournalError> {
        let path = self.path_of(&rec.job_id)?;
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.job_id));
        let text = serde_json::to_vec_pretty(rec).map_err(|source| JournalError::Corrupt {
            path: path.clone(),
            source,
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io("cannot write", &tmp))?;
            f.write_all(&text)
                .and_then(|()| f.sync_all())
                .map_err(io("cannot write", &tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io("cannot rename into", &path))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn update<F>(&self, job_id: &str, f: F) -> Result<(), JournalError>
    where
        F: FnOnce(&mut JobRecord) -> Result<(), JournalError>,
    {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path_of(job_id)?;
        let mut rec = self.read(&path)?.unwrap_or_else(|| JobRecord {
            job_id: job_id.to_string(),
            sub_jobs: BTreeMap::new(),
        });
        f(&mut rec)?;
        self.write(&rec)
    }

    /// Records that the agent took a job on (before its claim is confirmed and anything runs),
    /// so that a restart knows to resume it.
    pub fn record_accepted(&self, job_id: &str) -> Result<(), JournalError> {
        self.update(job_id, |_| Ok(()))
    }

    /// Records the intent to submit, before the submit command runs.
    pub fn record_intent(
        &self,
        job_id: &str,
        subjob: &str,
        job_name: &str,
        exit_file: Option<&Path>,
    ) -> Result<(), JournalError> {
        self.record_intent_in(job_id, subjob, job_name, exit_file, None)
    }

    /// Records the intent to submit a sub-job as task `index` of the job array named
    /// `array_name`, before the array's one submit command runs.
    pub fn record_array_intent(
        &self,
        job_id: &str,
        subjob: &str,
        array_name: &str,
        exit_file: &Path,
        index: u32,
    ) -> Result<(), JournalError> {
        self.record_intent_in(job_id, subjob, array_name, Some(exit_file), Some(index))
    }

    fn record_intent_in(
        &self,
        job_id: &str,
        subjob: &str,
        job_name: &str,
        exit_file: Option<&Path>,
        array_index: Option<u32>,
    ) -> Result<(), JournalError> {
        self.update(job_id, |rec| {
            rec.sub_jobs.insert(
                subjob.to_string(),
                SubJobRecord {
                    phase: Phase::Submitting,
                    job_name: job_name.to_string(),
                    batch_id: None,
                    exit_file: exit_file.map(Path::to_path_buf),
                    exit_code: None,
                    outcome: None,
                    array_index,
                    updated_at: now(),
                },
            );
            Ok(())
        })
    }

    /// Records the batch id the submit command returned.
    pub fn record_submitted(
        &self,
        job_id: &str,
        subjob: &str,
        batch_id: &str,
    ) -> Result<(), JournalError> {
        self.update(job_id, |rec| {
            let s = rec
                .sub_jobs
                .get_mut(subjob)
                .ok_or_else(|| JournalError::NoIntent {
                    job_id: job_id.into(),
                    subjob: subjob.into(),
                })?;
            s.phase = Phase::Submitted;
            s.batch_id = Some(batch_id.to_string());
            s.updated_at = now();
            Ok(())
        })
    }

    /// Records a finished sub-job (login sub-jobs may be recorded here too, without intent).
    pub fn record_done(
        &self,
        job_id: &str,
        subjob: &str,
        exit_code: Option<i32>,
        outcome: &str,
    ) -> Result<(), JournalError> {
        self.update(job_id, |rec| {
            let s = rec
                .sub_jobs
                .entry(subjob.to_string())
                .or_insert_with(|| SubJobRecord {
                    phase: Phase::Done,
                    job_name: String::new(),
                    batch_id: None,
                    exit_file: None,
                    exit_code: None,
                    outcome: None,
                    array_index: None,
                    updated_at: 0,
                });
            s.phase = Phase::Done;
            s.exit_code = exit_code;
            s.outcome = Some(outcome.to_string());
            s.updated_at = now();
            Ok(())
        })
    }

    /// Removes a job's record (after the server has its final status).
    pub fn forget(&self, job_id: &str) -> Result<(), JournalError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path_of(job_id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &path)(e)),
        }
    }

    pub fn get(&self, job_id: &str) -> Result<Option<JobRecord>, JournalError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read(&self.path_of(job_id)?)
    }

    /// Every job record, sorted by job id.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, JournalError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .map_err(io("cannot read", &self.dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(rec) = self.read(&e.path())? {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.job_id.cmp(&b.job_id));
        Ok(out)
    }

    /// Every sub-job in `phase`, as (job id, sub-job name, record), in job-id order.
    fn sub_jobs_in(
        &self,
        phase: Phase,
    ) -> Result<impl Iterator<Item = (String, String, SubJobRecord)>, JournalError> {
        Ok(self.jobs()?.into_iter().flat_map(move |rec| {
            let job_id = rec.job_id;
            rec.sub_jobs
                .into_iter()
                .filter(move |(_, s)| s.phase == phase)
                .map(move |(subjob, s)| (job_id.clone(), subjob, s))
        }))
    }

    /// Intents without a batch id (to reconcile after a restart).
    pub fn pending(&self) -> Result<Vec<PendingIntent>, JournalError> {
        Ok(self
            .sub_jobs_in(Phase::Submitting)?
            .map(|(job_id, subjob, s)| PendingIntent {
                job_id,
                subjob,
                job_name: s.job_name,
                exit_file: s.exit_file,
                array_index: s.array_index,
            })
            .collect())
    }

    /// Submitted sub-jobs that are not done (to poll with one status query).
    pub fn active(&self) -> Result<Vec<ActiveSubmission>, JournalError> {
        Ok(self
            .sub_jobs_in(Phase::Submitted)?
            .filter_map(|(job_id, subjob, s)| {
                Some(ActiveSubmission {
                    job_id,
                    subjob,
                    batch_id: s.batch_id?,
                    exit_file: s.exit_file,
                })
            })
            .collect())
    }

    /// Resolves every pending intent against the batch system (one `find_by_name` query for
    /// all of them); see the module docs.
    pub async fn reconcile(
        &self,
        adapter: &dyn BatchAdapter,
    ) -> Result<Reconciliation, JournalError> {
        let pending = self.pending()?;
        let mut out = Reconciliation::default();
        if pending.is_empty() {
            return Ok(out);
        }
        let mut names: Vec<String> = pending.iter().map(|p| p.job_name.clone()).collect();
        // The members of one array share its name.
        names.sort();
        names.dedup();
        let found = adapter.find_by_name(&names).await?;
        for p in pending {
            if let Some(found_id) = found.get(&p.job_name) {
                // A task of an array: its own id, from the array's.
                let id = &match p.array_index {
                    Some(i) => adapter.array_task_id(found_id, i),
                    None => found_id.clone(),
                };
                self.record_submitted(&p.job_id, &p.subjob, id)?;
                tracing::info!(job_id = %p.job_id, subjob = %p.subjob, batch_id = %id,
                    "reconciled: adopted the batch job submitted before the restart");
                out.adopted.push((p, id.clone()));
            } else if let Some(code) = p
                .exit_file
                .as_deref()
                .and_then(crate::script::read_exit_file)
            {
                self.record_done(
                    &p.job_id,
                    &p.subjob,
                    Some(code),
                    "finished while the agent was down (batch id unknown)",
                )?;
                out.finished.push((p, code));
            } else {
                out.not_submitted.push(p);
            }
        }
        Ok(out)
    }
}
