//! Output parsers for the batch-system presets, and their default state tables.
//!
//! Each parser turns a command's stdout into raw facts ([`RawStatus`]: id, the batch
//! system's own state word, a reason, an exit code if it gives one); the state table
//! ([`StateTable`]) maps the state word to a [`StateClass`]. Parsers are pure functions, so
//! they are tested directly against recorded outputs (`tests/fixtures/`).
//!
//! Pure functions: this module must never run a command or touch a file.

use super::{granted, StateClass};
use hpcsera_api_types::GrantedResources;
use serde_json::Value;
use std::collections::HashMap;

/// Which parser family (chosen by the preset; command paths may still be overridden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Slurm,
    Pbs,
    Lsf,
}

/// What the batch system says about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatus {
    pub id: String,
    /// The batch system's state word (`RUNNING`, `R`, `PEND`…), upper-case.
    pub state: String,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    /// What the batch system granted, where the query's output says ([`super::granted`]).
    pub granted: Option<GrantedResources>,
}

/// Raw state word → class. Lookups are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTable(HashMap<String, StateClass>);

impl StateTable {
    pub fn for_format(f: OutputFormat) -> StateTable {
        use StateClass::*;
        let pairs: &[(&str, StateClass)] = match f {
            OutputFormat::Slurm => &[
                ("PENDING", Pending),
                ("REQUEUED", Pending),
                ("REQUEUE_FED", Pending),
                // Synthetic: PENDING with reason JobHeldUser/JobHeldAdmin (see parse_squeue).
                ("HELD", Held),
                ("REQUEUE_HOLD", Held),
                ("RESV_DEL_HOLD", Held),
                ("SUSPENDED", Held),
                ("STOPPED", Held),
                ("CONFIGURING", Running),
                ("RUNNING", Running),
                ("COMPLETING", Running),
                ("SIGNALING", Running),
                ("STAGE_OUT", Running),
                ("RESIZING", Running),
                ("COMPLETED", Completed),
                ("FAILED", Failed),
                ("TIMEOUT", Failed),
                ("NODE_FAIL", Failed),
                ("BOOT_FAIL", Failed),
                ("OUT_OF_MEMORY", Failed),
                ("DEADLINE", Failed),
                ("PREEMPTED", Failed),
                ("SPECIAL_EXIT", Failed),
                ("REVOKED", Cancelled),
                ("CANCELLED", Cancelled),
            ],
            OutputFormat::Pbs => &[
                ("Q", Pending),
                ("W", Pending),
                ("T", Pending),
                ("M", Pending),
                ("H", Held),
                ("S", Held),
                ("U", Held),
                ("R", Running),
                ("E", Running),
                ("B", Running),
                // Finished (F, X): completed or failed by Exit_status, see `classify`.
                ("F", Completed),
                ("X", Completed),
            ],
            OutputFormat::Lsf => &[
                ("PEND", Pending),
                ("WAIT", Pending),
                ("PROV", Pending),
                ("PSUSP", Held),
                ("USUSP", Held),
                ("SSUSP", Running),
                ("RUN", Running),
                ("DONE", Completed),
                ("EXIT", Failed),
                ("UNKWN", Unknown),
                ("ZOMBI", Unknown),
            ],
        };
        StateTable(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<HashMap<_, _>>(),
        )
    }

    pub fn set(&mut self, raw: &str, class: StateClass) {
        self.0.insert(raw.to_ascii_uppercase(), class);
    }

    pub fn get(&self, raw: &str) -> Option<StateClass> {
        self.0.get(&raw.to_ascii_uppercase()).copied()
    }
}

/// Parses the first line of a submit command's output into a batch id.
pub fn parse_submit(f: OutputFormat, stdout: &str) -> Result<String, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("no job id in the output")?;
    let id = match f {
        // `sbatch --parsable`: `ID` or `ID;cluster`.
        OutputFormat::Slurm => line.split(';').next().unwrap_or("").trim().to_string(),
        // `qsub`: `1234.pbs01`.
        OutputFormat::Pbs => line.to_string(),
        // `bsub`: `Job <1234> is submitted to default queue <normal>.`
        OutputFormat::Lsf => stdout
            .lines()
            .find_map(|l| {
                let rest = l.trim().strip_prefix("Job <")?;
                Some(rest.split('>').next()?.to_string())
            })
            .ok_or("no `Job <ID>` in the output")?,
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-[]".contains(c))
    {
        return Err(format!("{id:?} does not look like a batch job id"));
    }
    Ok(id)
}

/// Parses a status query's stdout.
pub fn parse_status(f: OutputFormat, stdout: &str) -> Result<Vec<RawStatus>, String> {
    match f {
        OutputFormat::Slurm => Ok(parse_squeue(stdout)),
        OutputFormat::Pbs => parse_qstat_json(stdout),
        OutputFormat::Lsf => parse_bjobs_json(stdout),
    }
}

/// `squeue --noheader --format=%i|%T|%r|%D|%C|%l|%P|%a|%v|%m`: `ID|STATE|REASON` per line,
/// then (optional) what was granted ([`granted::slurm`]). A pending job held by a user or
/// admin (`JobHeldUser`, `JobHeldAdmin`) becomes the synthetic state `HELD`.
pub fn parse_squeue(stdout: &str) -> Vec<RawStatus> {
    stdout
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let mut it = l.split('|');
            let id = it.next()?.trim();
            let state = it.next()?.trim().to_ascii_uppercase();
            if id.is_empty() || state.is_empty() {
                return None;
            }
            let reason = it
                .next()
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty() && r != "None");
            let rest: Vec<&str> = it.collect();
            let held = state == "PENDING"
                && reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("JobHeld") || r == "job_requeued_in_held_state");
            Some(RawStatus {
                id: id.to_string(),
                state: if held { "HELD".into() } else { state },
                reason,
                exit_code: None,
                granted: granted::slurm(&rest),
            })
        })
        .collect()
}

/// `sacct --noheader --parsable2 --allocations --format=JobID,State,ExitCode`:
/// `ID|STATE|CODE:SIGNAL`; the state may be `CANCELLED by 1000`.
pub fn parse_sacct(stdout: &str) -> Vec<RawStatus> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().split('|');
            let id = it.next()?.trim();
            let state_field = it.next()?.trim();
            let state = state_field.split_whitespace().next()?.to_ascii_uppercase();
            if id.is_empty() || id.contains('.') {
                return None; // job steps
            }
            let exit_code = it
                .next()
                .and_then(|c| c.split(':').next())
                .and_then(|c| c.trim().parse().ok());
            Some(RawStatus {
                id: id.to_string(),
                state,
                reason: None,
                exit_code,
                granted: None,
            })
        })
        .collect()
}

/// `squeue --noheader --format=%i|%j`: id and job name.
pub fn parse_slurm_names(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (id, name) = l.trim().split_once('|')?;
            Some((name.trim().to_string(), id.trim().to_string()))
        })
        .filter(|(n, i)| !n.is_empty() && !i.is_empty())
        .collect()
}

fn json_body(stdout: &str) -> Result<Value, String> {
    // Some versions print warnings before the JSON document.
    let start = stdout.find('{').ok_or("no JSON object in the output")?;
    serde_json::from_str(&stdout[start..]).map_err(|e| format!("invalid JSON: {e}"))
}

fn json_int(v: Option<&Value>) -> Option<i32> {
    let v = v?;
    v.as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// `qstat -f -F json -x ID…`: `{"Jobs": {"ID": {"job_state": "F", "Exit_status": 0, …}}}`.
/// An empty answer (no `Jobs`) means none of the ids is known.
pub fn parse_qstat_json(stdout: &str) -> Result<Vec<RawStatus>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v = json_body(stdout)?;
    let Some(jobs) = v.get("Jobs").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (id, j) in jobs {
        let state = j
            .get("job_state")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("job {id} has no job_state"))?
            .trim()
            .to_ascii_uppercase();
        let exit_code = json_int(j.get("Exit_status"));
        let reason = j.get("comment").and_then(Value::as_str).map(str::to_string);
        out.push(RawStatus {
            id: id.clone(),
            state,
            reason,
            exit_code,
            granted: granted::pbs(j),
        });
    }
    Ok(out)
}

/// `qstat -f -F json -x`: job name → id.
pub fn parse_pbs_names(stdout: &str) -> Result<Vec<(String, String)>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v = json_body(stdout)?;
    let Some(jobs) = v.get("Jobs").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    Ok(jobs
        .iter()
        .filter_map(|(id, j)| {
            let name = j.get("Job_Name")?.as_str()?;
            Some((name.to_string(), id.clone()))
        })
        .collect())
}

/// The `RECORDS` of `bjobs -json` output (none for empty output).
fn lsf_records(stdout: &str) -> Result<Vec<Value>, String> {
    if stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    match json_body(stdout)?.get_mut("RECORDS").map(Value::take) {
        Some(Value::Array(records)) => Ok(records),
        _ => Err("no RECORDS array".into()),
    }
}

/// `bjobs -a -json -o "jobid stat exit_code …" ID…`: `{"RECORDS": [{"JOBID": "1", "STAT":
/// "RUN", "EXIT_CODE": ""}, {"JOBID": "9", "ERROR": "Job <9> is not found"}]}`; further
/// fields tell what was granted ([`granted::lsf`]).
pub fn parse_bjobs_json(stdout: &str) -> Result<Vec<RawStatus>, String> {
    let mut out = Vec::new();
    for r in &lsf_records(stdout)? {
        if r.get("ERROR").is_some() {
            continue; // unknown id
        }
        let Some(id) = r.get("JOBID").and_then(Value::as_str) else {
            continue;
        };
        let Some(state) = r.get("STAT").and_then(Value::as_str) else {
            continue;
        };
        out.push(RawStatus {
            id: id.to_string(),
            state: state.trim().to_ascii_uppercase(),
            reason: r
                .get("PEND_REASON")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            exit_code: json_int(r.get("EXIT_CODE")),
            granted: granted::lsf(r),
        });
    }
    Ok(out)
}

/// `bjobs -a -json -o "jobid job_name"`: job name → id.
pub fn parse_lsf_names(stdout: &str) -> Result<Vec<(String, String)>, String> {
    Ok(lsf_records(stdout)?
        .iter()
        .filter_map(|r| {
            Some((
                r.get("JOB_NAME")?.as_str()?.to_string(),
                r.get("JOBID")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Parses a find (job name → id) query's output.
pub fn parse_names(f: OutputFormat, stdout: &str) -> Result<Vec<(String, String)>, String> {
    match f {
        OutputFormat::Slurm => Ok(parse_slurm_names(stdout)),
        OutputFormat::Pbs => parse_pbs_names(stdout),
        OutputFormat::Lsf => parse_lsf_names(stdout),
    }
}

/// Whether a failed status command only complained about unknown job ids (so its answer is
/// "none of these jobs", not an error). `squeue --jobs=ID` with one unknown id exits 1.
pub fn is_unknown_id_complaint(f: OutputFormat, stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    match f {
        OutputFormat::Slurm => s.contains("invalid job id"),
        OutputFormat::Pbs => s.contains("unknown job id") || s.contains("job has finished"),
        OutputFormat::Lsf => s.contains("is not found"),
    }
}
