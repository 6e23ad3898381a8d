//! How job data reaches processes: environment variables only.
//!
//! Every login command and batch script of a job gets:
//!
//! | variable | value |
//! |---|---|
//! | `HPCSERA_JOB_ID` | the hpcsera job id |
//! | `HPCSERA_JOB_TYPE` | the job type's name |
//! | `HPCSERA_SITE` | the site name |
//! | `HPCSERA_WORK_DIR` | the job's own work dir (`<work_dir>/<job id>`) |
//! | `HPCSERA_SUBJOB` | the sub-job's name |
//! | `HPCSERA_PARAM_<name>` | each parameter: strings verbatim, numbers and booleans as their JSON text |
//!
//! and batch scripts also `HPCSERA_EXIT_FILE` (where the rendered script records its exit
//! code, see [`crate::script`]).
//!
//! Values are never put into shell text: a command or script reads `"$HPCSERA_PARAM_x"`. A
//! value with a NUL byte cannot be in an environment variable and is refused
//! ([`EnvError::Nul`]); so are parameter values that are arrays or objects.
//!
//! This module must never build shell text from a value, nor let a job id name a path outside
//! the work dir.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Prefix of the parameter variables.
pub const PARAM_PREFIX: &str = "HPCSERA_PARAM_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error(
        "parameter {name:?} contains a NUL byte, which cannot be passed in an environment variable"
    )]
    Nul { name: String },
    #[error("parameter {name:?} is {kind}; only strings, numbers and booleans can be passed")]
    NotScalar { name: String, kind: &'static str },
    #[error("{name:?} is not a valid parameter name (it must match [A-Za-z_][A-Za-z0-9_]*)")]
    BadName { name: String },
    #[error("job id {id:?} cannot be used as a directory name (letters, digits, '-', '_', '.' only, not starting with '.')")]
    BadJobId { id: String },
    #[error("{what} {value:?} contains a NUL byte")]
    NulField { what: &'static str, value: String },
}

/// The job a process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    pub job_id: String,
    pub job_type: String,
    pub site: String,
    /// The job's own work dir.
    pub job_dir: PathBuf,
}

/// Whether a job id is safe as a single path component and in a batch job name.
pub fn is_safe_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The job's work dir, `<work_dir>/<job_id>`, refusing ids that are not one plain path
/// component (so a job id can never point outside the work dir).
pub fn job_dir(work_dir: &Path, job_id: &str) -> Result<PathBuf, EnvError> {
    if !is_safe_job_id(job_id) {
        return Err(EnvError::BadJobId { id: job_id.into() });
    }
    Ok(work_dir.join(job_id))
}

/// The batch job name of a sub-job: `hpcsera-<job id>-<sub-job>`. It carries the hpcsera
/// job id so a restarted agent finds the batch job again ([`crate::batch::BatchAdapter::find_by_name`]).
pub fn batch_job_name(job_id: &str, subjob: &str) -> String {
    format!("hpcsera-{job_id}-{subjob}")
}

/// The batch job name of a job array of sweep members: `hpcsera-array-<first member's job
/// id>-<sub-job>`; every member's journal intent names it, so a restart finds the array.
pub fn array_job_name(first_job_id: &str, subjob: &str) -> String {
    format!("hpcsera-array-{first_job_id}-{subjob}")
}

/// A parameter value as the text of its environment variable.
pub fn param_value_text(name: &str, v: &Value) -> Result<Option<String>, EnvError> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) => {
            return Err(EnvError::NotScalar {
                name: name.into(),
                kind: "an array",
            })
        }
        Value::Object(_) => {
            return Err(EnvError::NotScalar {
                name: name.into(),
                kind: "an object",
            })
        }
    };
    if text.contains('\0') {
        return Err(EnvError::Nul { name: name.into() });
    }
    Ok(Some(text))
}

/// The environment of a sub-job: the job's variables, `HPCSERA_SUBJOB`, and one
/// `HPCSERA_PARAM_<name>` per (validated) parameter. Sorted by name for stable output.
pub fn job_env(
    ctx: &JobContext,
    subjob: &str,
    params: &Map<String, Value>,
) -> Result<Vec<(String, String)>, EnvError> {
    let dir = ctx.job_dir.to_string_lossy().into_owned();
    let mut env = Vec::new();
    for (what, k, v) in [
        ("job id", "HPCSERA_JOB_ID", ctx.job_id.as_str()),
        ("job type", "HPCSERA_JOB_TYPE", ctx.job_type.as_str()),
        ("site", "HPCSERA_SITE", ctx.site.as_str()),
        ("work dir", "HPCSERA_WORK_DIR", dir.as_str()),
        ("sub-job", "HPCSERA_SUBJOB", subjob),
    ] {
        if v.contains('\0') {
            return Err(EnvError::NulField {
                what,
                value: v.replace('\0', "\\0"),
            });
        }
        env.push((k.to_string(), v.to_string()));
    }
    for (name, v) in params {
        if !hpcsera_api_types::is_valid_name(name, false) {
            return Err(EnvError::BadName { name: name.clone() });
        }
        if let Some(text) = param_value_text(name, v)? {
            env.push((format!("{PARAM_PREFIX}{name}"), text));
        }
    }
    env.sort();
    Ok(env)
}

/// [`job_env`] plus `HPCSERA_EXIT_FILE` for a batch sub-job.
pub fn batch_env(
    ctx: &JobContext,
    subjob: &str,
    params: &Map<String, Value>,
    exit_file: &Path,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env = job_env(ctx, subjob, params)?;
    env.push((
        "HPCSERA_EXIT_FILE".into(),
        exit_file.to_string_lossy().into_owned(),
    ));
    env.sort();
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> JobContext {
        JobContext {
            job_id: "j1".into(),
            job_type: "sim".into(),
            site: "local".into(),
            job_dir: "/w/j1".into(),
        }
    }

    #[test]
    fn values_are_verbatim_or_json_text() {
        let p = json!({"s": "a b $(x) `y` ;z\n'\"", "i": 42, "f": 0.5, "b": true, "n": null});
        let env = job_env(&ctx(), "run", p.as_object().unwrap()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HPCSERA_PARAM_s"), Some("a b $(x) `y` ;z\n'\""));
        assert_eq!(get("HPCSERA_PARAM_i"), Some("42"));
        assert_eq!(get("HPCSERA_PARAM_f"), Some("0.5"));
        assert_eq!(get("HPCSERA_PARAM_b"), Some("true"));
        assert_eq!(get("HPCSERA_PARAM_n"), None);
        assert_eq!(get("HPCSERA_JOB_ID"), Some("j1"));
        assert_eq!(get("HPCSERA_WORK_DIR"), Some("/w/j1"));
        assert_eq!(get("HPCSERA_SUBJOB"), Some("run"));
    }

    #[test]
    fn nul_and_non_scalars_are_refused() {
        let p = json!({"s": "a\u{0}b"});
        assert_eq!(
            job_env(&ctx(), "run", p.as_object().unwrap()),
            Err(EnvError::Nul { name: "s".into() })
        );
        let p = json!({"s": [1]});
        assert!(job_env(&ctx(), "run", p.as_object().unwrap()).is_err());
        let p = json!({"a=b": "x"});
        assert!(job_env(&ctx(), "run", p.as_object().unwrap()).is_err());
    }

    #[test]
    fn job_ids_must_be_one_path_component() {
        assert!(job_dir(Path::new("/w"), "0190-ab_c.1").is_ok());
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "a\0b", "x%j"] {
            assert!(job_dir(Path::new("/w"), bad).is_err(), "{bad:?}");
        }
    }
}
