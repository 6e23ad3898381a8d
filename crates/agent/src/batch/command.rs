//! The generic command adapter: command templates (argv arrays) + an output parser + a
//! state table, with presets for Slurm, PBS and LSF.
//!
//! # Templates and placeholders
//!
//! Each command is an argv array. Placeholders are replaced inside single argv entries, in
//! one pass (a replaced value is never scanned again), and never joined into shell text:
//!
//! | placeholder | value |
//! |---|---|
//! | `{script}` | the rendered batch script |
//! | `{job_name}` | the batch job name (carries the hpcsera job id) |
//! | `{stdout}`, `{stderr}` | output files |
//! | `{work_dir}` | the job's work dir |
//! | `{id}` | one batch id (cancel, hold, release) |
//! | `{ids}` | all ids of a status query, comma-joined |
//! | `{names}` | all job names of a find query, comma-joined |
//!
//! Three placeholders stand for a whole argv entry and expand to zero or more entries:
//! `{options}` (the job's resources as the preset renders them ([`super::resources`]), the
//! config's `submit_options`, then the sub-job's `options`), `{id_list}`
//! (one entry per id) and `{name_list}` (one entry per job name).
//!
//! # Presets
//!
//! | | slurm | pbs | lsf |
//! |---|---|---|---|
//! | submit | `sbatch --parsable --job-name={job_name} --output={stdout} --error={stderr} --chdir={work_dir} --export=ALL {options} {script}` | `qsub -V -N {job_name} -o {stdout} -e {stderr} {options} {script}` | `bsub -J {job_name} -o {stdout} -e {stderr} -cwd {work_dir} {options} {script}` |
//! | status | `squeue --noheader --states=all --format=%i\|%T\|%r\|%D\|%C\|%l\|%P\|%a\|%v\|%m --jobs={ids}` | `qstat -f -F json -x {id_list}` | `bjobs -a -json -o "jobid stat exit_code queue proj_name nexec_host nalloc_slot runtimelimit rsvid" {id_list}` |
//! | accounting | `sacct --noheader --parsable2 --allocations --format=JobID,State,ExitCode --jobs={ids}` | – | – |
//! | cancel / hold / release | `scancel`, `scontrol hold`, `scontrol release` | `qdel`, `qhold`, `qrls` | `bkill`, `bstop`, `bresume` |
//! | find | `squeue --noheader --states=all --format=%i\|%j --name={names}` | `qstat -f -F json -x` | `bjobs -a -json -o "jobid job_name"` |
//! | report (provenance) | `scontrol show job {id}` | `qstat -f -x {id}` | `bjobs -l {id}` |
//! | version (provenance) | `sbatch --version` | `qstat --version` | `lsid` |
//!
//! The job's environment (`HPCSERA_*`) is the submit command's process environment, which
//! Slurm and LSF hand to the job (`--export=ALL`, bsub's default). PBS is different: `qsub -V`
//! folds the environment into one comma-separated `Variable_List`, and several PBS versions
//! split values at commas (a value `a,NAME=x` would set `NAME`). So with the PBS preset the
//! `HPCSERA_*` variables are written to `<job dir>/.hpcsera-env-<script>` (0600, `NAME=value`
//! entries separated by NUL) and only its path reaches qsub, as `HPCSERA_ENV_FILE`; the
//! script's header exports the entries verbatim (see [`crate::script`]).
//!
//! This module owns the templates' expansion and the status resolution; it must never join a
//! value into shell text, and it runs commands only through [`super::exec`].

use super::exec::{display_argv, excerpt, failed, Exec};
use super::parse::{self, OutputFormat, RawStatus, StateTable};
pub use super::presets::Templates;
use super::probe::{Probe, ProbeLimits};
use super::template::{expand, Vars};
use super::{
    BatchAdapter, BatchConfig, BatchError, BatchJobRef, BatchPreset, BatchState, BoxFuture,
    StateClass, SubmitRequest,
};
use crate::script::read_exit_file;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Default timeout of one batch-system command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn path_str<'a>(p: &'a Path, what: &str) -> Result<&'a str, BatchError> {
    p.to_str()
        .ok_or_else(|| BatchError::Invalid(format!("{what} {} is not UTF-8", p.display())))
}

/// The generic command adapter.
pub struct CommandAdapter {
    name: String,
    preset: BatchPreset,
    /// `[batch.resources]`: overrides of the preset's resource mapping.
    resource_templates: super::resources::ResourceTemplates,
    format: OutputFormat,
    templates: Templates,
    submit_options: Vec<String>,
    states: StateTable,
    exec: Exec,
    /// Pass the job's environment in a file, not through the submit command's environment
    /// (PBS; see the module docs).
    env_file: bool,
    /// What the last status query said was granted, by batch id (replaced by every query).
    granted: Mutex<HashMap<String, hpcsera_api_types::GrantedResources>>,
    /// Ids this adapter was asked to cancel (so a job that vanished after `scancel` reads as
    /// cancelled, not failed with 143). In memory only.
    cancelled: Mutex<HashSet<String>>,
}

/// Writes a job's environment to `<dir of script>/.hpcsera-env-<script name>` (0600, written
/// atomically): `NAME=value` entries, each ended by a NUL (values never hold one).
fn write_env_file(
    script: &Path,
    env: &[(String, String)],
) -> Result<std::path::PathBuf, BatchError> {
    let dir = script.parent().unwrap_or(Path::new("."));
    let name = script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = dir.join(format!(".hpcsera-env-{name}"));
    let tmp = dir.join(format!(".hpcsera-env-{name}.tmp"));
    let mut data = Vec::new();
    for (k, v) in env {
        if k.contains(['=', '\0']) || v.contains('\0') {
            return Err(BatchError::Invalid(format!(
                "the environment variable {k:?} cannot be passed on"
            )));
        }
        data.extend_from_slice(k.as_bytes());
        data.push(b'=');
        data.extend_from_slice(v.as_bytes());
        data.push(0);
    }
    let io = |e: std::io::Error| {
        BatchError::Invalid(format!(
            "cannot write the job's environment file {}: {e}",
            path.display()
        ))
    };
    crate::private_file::write_new_private(&tmp, &data).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

impl CommandAdapter {
    /// An adapter with a preset's templates.
    pub fn preset(preset: BatchPreset) -> Result<CommandAdapter, BatchError> {
        Self::from_config(&BatchConfig {
            preset,
            ..BatchConfig::default()
        })
    }

    /// An adapter from the `[batch]` config: the preset's templates with the config's
    /// overrides.
    pub fn from_config(cfg: &BatchConfig) -> Result<CommandAdapter, BatchError> {
        let mut t = Templates::preset(cfg.preset).ok_or_else(|| BatchError::Unsupported {
            adapter: cfg.preset.as_str().into(),
            operation: "batch-system commands (use the local adapter)",
        })?;
        let format = match cfg.preset {
            BatchPreset::Slurm => OutputFormat::Slurm,
            BatchPreset::Pbs => OutputFormat::Pbs,
            BatchPreset::Lsf => OutputFormat::Lsf,
            BatchPreset::Local => unreachable_local()?,
        };
        for (slot, over) in [
            (&mut t.submit, &cfg.submit),
            (&mut t.status, &cfg.status),
            (&mut t.accounting, &cfg.accounting),
            (&mut t.cancel, &cfg.cancel),
            (&mut t.hold, &cfg.hold),
            (&mut t.release, &cfg.release),
            (&mut t.find, &cfg.find),
            (&mut t.report, &cfg.report),
            (&mut t.version, &cfg.version),
        ] {
            if let Some(o) = over {
                slot.clone_from(o);
            }
        }
        let mut states = StateTable::for_format(format);
        for (raw, class) in &cfg.states {
            let c = StateClass::parse(class).ok_or_else(|| {
                BatchError::Invalid(format!("batch.states.{raw}: unknown class {class:?}"))
            })?;
            states.set(raw, c);
        }
        Ok(CommandAdapter {
            name: cfg.preset.as_str().to_string(),
            preset: cfg.preset,
            resource_templates: cfg.resources.clone(),
            format,
            templates: t,
            submit_options: cfg.submit_options.clone(),
            states,
            exec: Exec::new(
                cfg.command_timeout_seconds
                    .map_or(DEFAULT_COMMAND_TIMEOUT, Duration::from_secs),
            ),
            env_file: cfg.preset == BatchPreset::Pbs,
            granted: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(HashSet::new()),
        })
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    fn was_cancelled(&self, id: &str) -> bool {
        self.cancelled
            .lock()
            .map(|s| s.contains(id))
            .unwrap_or(false)
    }

    /// Maps one raw status (plus the exit file's code) to a state.
    fn classify(&self, raw: &RawStatus, file_code: Option<i32>) -> BatchState {
        let class = self.states.get(&raw.state).unwrap_or(StateClass::Unknown);
        let cancelled = self.was_cancelled(&raw.id);
        let describe = || match &raw.reason {
            Some(r) => format!("batch system reports {} ({r})", raw.state),
            None => format!("batch system reports {}", raw.state),
        };
        match class {
            StateClass::Pending => BatchState::Pending,
            StateClass::Held => BatchState::Held,
            StateClass::Running => BatchState::Running,
            StateClass::Unknown => BatchState::Unknown,
            StateClass::Cancelled => BatchState::Cancelled,
            StateClass::Completed => {
                // PBS: Exit_status < 0 is a PBS failure to run the job; >= 256 is 256 + signal.
                if file_code.is_none() {
                    if let Some(c) = raw.exit_code {
                        if c < 0 {
                            return BatchState::Failed {
                                exit_code: None,
                                reason: format!(
                                    "the batch system could not run the job (exit status {c})"
                                ),
                            };
                        }
                        if c >= 256 {
                            if cancelled {
                                return BatchState::Cancelled;
                            }
                            return BatchState::Failed {
                                exit_code: Some(128 + (c - 256)),
                                reason: format!("killed by signal {}", c - 256),
                            };
                        }
                    }
                }
                let code = file_code.or(raw.exit_code).unwrap_or(0);
                self.state_for_code(&raw.id, code)
            }
            StateClass::Failed => {
                if cancelled {
                    return BatchState::Cancelled;
                }
                BatchState::Failed {
                    exit_code: file_code.or(raw.exit_code),
                    reason: describe(),
                }
            }
        }
    }

    /// A finished job known only by its exit code.
    fn state_for_code(&self, id: &str, code: i32) -> BatchState {
        if code == 0 {
            BatchState::Completed { exit_code: 0 }
        } else if self.was_cancelled(id) {
            BatchState::Cancelled
        } else {
            BatchState::Failed {
                exit_code: Some(code),
                reason: format!("the job script exited with code {code}"),
            }
        }
    }

    async fn query_status(
        &self,
        template: &[String],
        ids: &[String],
        accounting: bool,
    ) -> Result<Vec<RawStatus>, BatchError> {
        let joined = ids.join(",");
        let vars = Vars {
            single: vec![("ids", joined.as_str())],
            lists: vec![("id_list", ids)],
        };
        let argv = expand(template, &vars);
        let out = self.exec.run(&argv, &[], None).await?;
        if !out.success()
            && out.stdout.trim().is_empty()
            && !parse::is_unknown_id_complaint(self.format, &out.stderr)
        {
            return Err(failed(&argv, &out));
        }
        let parsed = if accounting && self.format == OutputFormat::Slurm {
            Ok(parse::parse_sacct(&out.stdout))
        } else {
            parse::parse_status(self.format, &out.stdout)
        };
        parsed.map_err(|message| BatchError::Parse {
            command: display_argv(&argv),
            message,
            excerpt: excerpt(&out.stdout, 500),
        })
    }

    async fn simple(&self, template: &[String], id: &str) -> Result<(), BatchError> {
        if id.is_empty() || id.starts_with('-') {
            return Err(BatchError::Invalid(format!("{id:?} is not a batch job id")));
        }
        let vars = Vars {
            single: vec![("id", id)],
            lists: vec![],
        };
        let argv = expand(template, &vars);
        self.exec.run_ok(&argv, &[], None).await.map(|_| ())
    }
}

fn unreachable_local() -> Result<OutputFormat, BatchError> {
    Err(BatchError::Unsupported {
        adapter: "local".into(),
        operation: "batch-system commands",
    })
}

impl BatchAdapter for CommandAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn submit<'a>(&'a self, req: &'a SubmitRequest) -> BoxFuture<'a, Result<String, BatchError>> {
        Box::pin(async move {
            let script = path_str(&req.script_path, "script path")?;
            let stdout = path_str(&req.stdout_path, "stdout path")?;
            let stderr = path_str(&req.stderr_path, "stderr path")?;
            let work_dir = path_str(&req.work_dir, "work dir")?;
            if req.job_name.is_empty() || req.job_name.starts_with('-') {
                return Err(BatchError::Invalid(format!(
                    "{:?} is not a usable job name",
                    req.job_name
                )));
            }
            let mut options =
                super::resources::render(self.preset, &self.resource_templates, &req.resources);
            options.extend(self.submit_options.iter().cloned());
            options.extend(req.options.iter().cloned());
            let vars = Vars {
                single: vec![
                    ("script", script),
                    ("job_name", req.job_name.as_str()),
                    ("stdout", stdout),
                    ("stderr", stderr),
                    ("work_dir", work_dir),
                ],
                lists: vec![("options", &options)],
            };
            let argv = expand(&self.templates.submit, &vars);
            let env = if self.env_file {
                let file = write_env_file(&req.script_path, &req.env)?;
                vec![(
                    "HPCSERA_ENV_FILE".to_string(),
                    path_str(&file, "environment file")?.to_string(),
                )]
            } else {
                req.env.clone()
            };
            let out = self.exec.run_ok(&argv, &env, Some(&req.work_dir)).await?;
            parse::parse_submit(self.format, &out.stdout).map_err(|message| BatchError::Parse {
                command: display_argv(&argv),
                message,
                excerpt: excerpt(&out.stdout, 500),
            })
        })
    }

    fn status_all<'a>(
        &'a self,
        jobs: &'a [BatchJobRef],
    ) -> BoxFuture<'a, Result<HashMap<String, BatchState>, BatchError>> {
        Box::pin(async move {
            let mut result = HashMap::new();
            if jobs.is_empty() {
                return Ok(result);
            }
            let mut seen = HashSet::new();
            let ids: Vec<String> = jobs
                .iter()
                .filter(|j| seen.insert(j.id.as_str()))
                .map(|j| j.id.clone())
                .collect();
            let raws = self
                .query_status(&self.templates.status, &ids, false)
                .await?;
            let by_id: HashMap<&str, &RawStatus> =
                raws.iter().map(|r| (r.id.as_str(), r)).collect();
            if let Ok(mut g) = self.granted.lock() {
                *g = raws
                    .iter()
                    .filter_map(|r| Some((r.id.clone(), r.granted.clone()?)))
                    .collect();
            }
            let mut missing = Vec::new();
            for j in jobs {
                let file_code = j.exit_file.as_deref().and_then(read_exit_file);
                if let Some(raw) = by_id.get(j.id.as_str()) {
                    result.insert(j.id.clone(), self.classify(raw, file_code));
                } else if let Some(code) = file_code {
                    result.insert(j.id.clone(), self.state_for_code(&j.id, code));
                } else {
                    missing.push(j.id.clone());
                }
            }
            if !missing.is_empty() && !self.templates.accounting.is_empty() {
                match self
                    .query_status(&self.templates.accounting, &missing, true)
                    .await
                {
                    Ok(acct) => {
                        for raw in &acct {
                            if missing.contains(&raw.id) {
                                result.insert(raw.id.clone(), self.classify(raw, None));
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "accounting query gave nothing"),
                }
            }
            for id in missing {
                let state = if self.was_cancelled(&id) {
                    BatchState::Cancelled
                } else {
                    BatchState::Unknown
                };
                result.entry(id).or_insert(state);
            }
            Ok(result)
        })
    }

    fn cancel<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(async move {
            if let Ok(mut s) = self.cancelled.lock() {
                s.insert(id.to_string());
            }
            self.simple(&self.templates.cancel, id).await
        })
    }

    fn hold<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(self.simple(&self.templates.hold, id))
    }

    fn release<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BatchError>> {
        Box::pin(self.simple(&self.templates.release, id))
    }

    fn find_by_name<'a>(
        &'a self,
        job_names: &'a [String],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, BatchError>> {
        Box::pin(async move {
            let mut found = HashMap::new();
            if job_names.is_empty() {
                return Ok(found);
            }
            let joined = job_names.join(",");
            let vars = Vars {
                single: vec![("names", joined.as_str())],
                lists: vec![("name_list", job_names)],
            };
            let argv = expand(&self.templates.find, &vars);
            let out = self.exec.run(&argv, &[], None).await?;
            if !out.success() && out.stdout.trim().is_empty() {
                return Err(failed(&argv, &out));
            }
            let pairs = parse::parse_names(self.format, &out.stdout).map_err(|message| {
                BatchError::Parse {
                    command: display_argv(&argv),
                    message,
                    excerpt: excerpt(&out.stdout, 500),
                }
            })?;
            for (name, id) in pairs {
                if job_names.contains(&name) {
                    if let Some(prev) = found.insert(name.clone(), id.clone()) {
                        tracing::warn!(%name, %prev, %id, "several batch jobs carry the same name");
                    }
                }
            }
            Ok(found)
        })
    }

    fn commands_spawned(&self) -> u64 {
        self.exec.count()
    }

    fn granted(&self, id: &str) -> Option<hpcsera_api_types::GrantedResources> {
        self.granted.lock().ok()?.get(id).cloned()
    }

    fn report<'a>(&'a self, id: &'a str, limits: ProbeLimits) -> BoxFuture<'a, Option<Probe>> {
        Box::pin(async move {
            if self.templates.report.is_empty() || id.is_empty() || id.starts_with('-') {
                return None;
            }
            let vars = Vars {
                single: vec![("id", id)],
                lists: vec![],
            };
            Some(limits.run(&expand(&self.templates.report, &vars)).await)
        })
    }

    fn version(&self, limits: ProbeLimits) -> BoxFuture<'_, Option<Probe>> {
        Box::pin(async move {
            if self.templates.version.is_empty() {
                return None;
            }
            Some(limits.run(&self.templates.version).await)
        })
    }
}
