//! Batch-system job arrays: many members of one sweep submitted with ONE submit command.
//!
//! # How a task finds its member
//!
//! Every member is rendered as if it were submitted alone (its script `<job dir>/<sub>.sh`,
//! its exit file, its `HPCSERA_*` environment). The array adds, in its own directory
//! `<work>/.arrays/<name>/`:
//!
//! * per member, `task-<i>`: four NUL-ended paths — the member's script, its environment file
//!   (`<job dir>/.hpcsera-env-<script>`, NUL-separated `NAME=value`, as PBS jobs get it), its
//!   stdout and its stderr file;
//! * `array.sh`, a fixed wrapper (no data in it) that takes the task index from
//!   `SLURM_ARRAY_TASK_ID`, `PBS_ARRAY_INDEX` or `LSB_JOBINDEX` (LSF counts from 1), reads
//!   `task-<i>` and `exec`s the member's script with `HPCSERA_ENV_FILE` set and its output
//!   redirected. The member script's own header exports the environment verbatim (never
//!   evaluated), so parameters never become shell text here either.
//!
//! The batch system's own log of each task goes to `task-<i>.log` in the array directory.
//!
//! # Ids
//!
//! | | array option | submit answers | task *i* (0-based) |
//! |---|---|---|---|
//! | slurm | `--array=0-N[%M]` | `123` | `123_i` |
//! | pbs | `-J 0-N[%M]` | `123[].srv` | `123[i].srv` |
//! | lsf | job name `NAME[1-N+1][%M]` | `123` | `123[i+1]` |
//!
//! Cancel, hold and release of one member use its task's id (`scancel 123_4`).
//!
//! Data and file writing only; the submit itself is the adapter's.

use super::{BatchError, BatchPreset, SubmitRequest};
use std::path::{Path, PathBuf};

/// A job array: the members in task order, sharing the first member's resources and
/// options.
#[derive(Debug, Clone)]
pub struct ArrayRequest {
    /// The array's own directory (wrapper, task files, the tasks' batch logs).
    pub dir: PathBuf,
    /// The array's batch job name (carries the first member's id, see
    /// [`crate::env::array_job_name`]).
    pub job_name: String,
    /// The members as each would be submitted alone.
    pub members: Vec<SubmitRequest>,
    /// At most this many tasks run at once (`%M`); `None`: no limit.
    pub throttle: Option<u32>,
}

const WRAPPER: &str = r#"#!/bin/bash
# hpcsera: one task of a job array. The task index selects the member; its own rendered
# script runs with its own environment file and output files. Nothing here comes from job
# parameters.
__i="${SLURM_ARRAY_TASK_ID:-${PBS_ARRAY_INDEX:-}}"
if [ -z "$__i" ] && [ -n "${LSB_JOBINDEX:-}" ]; then __i=$((LSB_JOBINDEX - 1)); fi
case "$__i" in ''|*[!0-9]*) echo "hpcsera: no array task index" >&2; exit 1 ;; esac
__task="${HPCSERA_ARRAY_DIR:?HPCSERA_ARRAY_DIR is not set}/task-$__i"
{ IFS= read -r -d '' __script && IFS= read -r -d '' __env &&
  IFS= read -r -d '' __out && IFS= read -r -d '' __err; } <"$__task" ||
  { echo "hpcsera: cannot read $__task" >&2; exit 1; }
unset HPCSERA_ARRAY_DIR
export HPCSERA_ENV_FILE="$__env"
exec /bin/bash "$__script" >"$__out" 2>"$__err"
"#;

/// The wrapper script's path in an array directory.
pub fn wrapper_path(dir: &Path) -> PathBuf {
    dir.join("array.sh")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BatchError + '_ {
    move |e| BatchError::Io {
        context: "cannot write the job array's file",
        path: path.to_path_buf(),
        source: e,
    }
}

/// Writes the wrapper and one task file per member (each member's environment file is
/// written by `env_file`, which returns its path). Files are 0600 (the wrapper 0700) and new.
pub fn write_files(
    req: &ArrayRequest,
    env_file: impl Fn(&SubmitRequest) -> Result<PathBuf, BatchError>,
) -> Result<PathBuf, BatchError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&req.dir)
        .map_err(io(&req.dir))?;
    for (i, m) in req.members.iter().enumerate() {
        let env = env_file(m)?;
        let mut data = Vec::new();
        for p in [&m.script_path, &env, &m.stdout_path, &m.stderr_path] {
            let s = p
                .to_str()
                .ok_or_else(|| BatchError::Invalid(format!("{} is not UTF-8", p.display())))?;
            data.extend_from_slice(s.as_bytes());
            data.push(0);
        }
        let path = req.dir.join(format!("task-{i}"));
        let _ = std::fs::remove_file(&path);
        crate::private_file::write_new_private(&path, &data).map_err(io(&path))?;
    }
    let wrapper = wrapper_path(&req.dir);
    let _ = std::fs::remove_file(&wrapper);
    crate::private_file::write_new_private(&wrapper, WRAPPER.as_bytes()).map_err(io(&wrapper))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&wrapper))?;
    Ok(wrapper)
}

/// What the preset adds to a submit for an array of `tasks` tasks: extra options, the job
/// name to use, and the pattern of each task's batch log (in `dir`).
pub fn submit_parts(
    preset: BatchPreset,
    dir: &Path,
    job_name: &str,
    tasks: u32,
    throttle: Option<u32>,
) -> Result<(Vec<String>, String, PathBuf), BatchError> {
    if tasks == 0 {
        return Err(BatchError::Invalid(
            "an array needs at least one task".into(),
        ));
    }
    let last = tasks - 1;
    let pct = throttle.map(|m| format!("%{m}")).unwrap_or_default();
    Ok(match preset {
        BatchPreset::Slurm => (
            vec![format!("--array=0-{last}{pct}")],
            job_name.to_string(),
            dir.join("task-%a.log"),
        ),
        BatchPreset::Pbs => (
            vec!["-J".into(), format!("0-{last}{pct}")],
            job_name.to_string(),
            dir.join("task-^array_index^.log"),
        ),
        BatchPreset::Lsf => (
            Vec::new(),
            format!("{job_name}[1-{tasks}]{pct}"),
            dir.join("task-%I.log"),
        ),
        BatchPreset::Local => {
            return Err(BatchError::Unsupported {
                adapter: "local".into(),
                operation: "job arrays",
            })
        }
    })
}

/// The batch id of task `index` (0-based) of the array whose submit answered `base`.
pub fn task_id(preset: BatchPreset, base: &str, index: u32) -> String {
    match preset {
        BatchPreset::Pbs => match base.split_once("[]") {
            Some((head, tail)) => format!("{head}[{index}]{tail}"),
            None => format!("{base}[{index}]"),
        },
        BatchPreset::Lsf => format!("{base}[{}]", index + 1),
        BatchPreset::Slurm | BatchPreset::Local => format!("{base}_{index}"),
    }
}

/// The array's id (what its submit answered) from the id of the array or any of its tasks
/// as a find query shows it (`123_[0-9%4]`, `123_4`; `123[4].srv`; `123`).
pub fn base_id(preset: BatchPreset, id: &str) -> String {
    match preset {
        BatchPreset::Pbs => match (id.find('['), id.find(']')) {
            (Some(a), Some(b)) if a < b => format!("{}[]{}", &id[..a], &id[b + 1..]),
            _ => id.to_string(),
        },
        BatchPreset::Lsf => id.split('[').next().unwrap_or(id).to_string(),
        BatchPreset::Slurm | BatchPreset::Local => id.split('_').next().unwrap_or(id).to_string(),
    }
}

/// A find query's job name without an array element's `[i]` (LSF shows `NAME[3]`).
pub fn strip_element(name: &str) -> &str {
    match name
        .strip_suffix(']')
        .and_then(|n| n.rfind('[').map(|i| &n[..i]))
    {
        Some(stem) => stem,
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_per_preset() {
        assert_eq!(task_id(BatchPreset::Slurm, "123", 4), "123_4");
        assert_eq!(task_id(BatchPreset::Pbs, "123[].pbs01", 4), "123[4].pbs01");
        assert_eq!(task_id(BatchPreset::Lsf, "123", 4), "123[5]");
        assert_eq!(base_id(BatchPreset::Slurm, "123_[0-9%4]"), "123");
        assert_eq!(base_id(BatchPreset::Slurm, "123_7"), "123");
        assert_eq!(base_id(BatchPreset::Pbs, "123[7].pbs01"), "123[].pbs01");
        assert_eq!(base_id(BatchPreset::Pbs, "123[].pbs01"), "123[].pbs01");
        assert_eq!(base_id(BatchPreset::Lsf, "123[8]"), "123");
        assert_eq!(strip_element("hpcsera-a-run[3]"), "hpcsera-a-run");
        assert_eq!(strip_element("hpcsera-a-run"), "hpcsera-a-run");
    }

    #[test]
    fn options_per_preset() {
        let d = Path::new("/w/.arrays/a");
        let (o, n, log) = submit_parts(BatchPreset::Slurm, d, "x", 200, Some(10)).unwrap();
        assert_eq!(
            (o, n, log),
            (
                vec!["--array=0-199%10".to_string()],
                "x".into(),
                d.join("task-%a.log")
            )
        );
        let (o, _, log) = submit_parts(BatchPreset::Pbs, d, "x", 3, None).unwrap();
        assert_eq!(
            (o, log),
            (
                vec!["-J".to_string(), "0-2".into()],
                d.join("task-^array_index^.log")
            )
        );
        let (o, n, _) = submit_parts(BatchPreset::Lsf, d, "x", 3, Some(2)).unwrap();
        assert_eq!((o.len(), n), (0, "x[1-3]%2".to_string()));
        assert!(submit_parts(BatchPreset::Slurm, d, "x", 0, None).is_err());
    }
}
