//! Rendering a batch sub-job's script into the job's work dir.
//!
//! The rendered file `<job dir>/<sub-job>.sh` is what gets submitted, and it stays in the
//! job's work dir as a record of what ran. It is:
//!
//! 1. `#!/bin/bash`;
//! 2. the leading comment block of the configured script (scheduler directives such as
//!    `#SBATCH …`, `#PBS …`, `#BSUB …` must come before the first command to count), with the
//!    configured `#!` line dropped;
//! 3. a fixed header: traps that write the script's exit status to `$HPCSERA_EXIT_FILE` when
//!    it ends (normally, by `exit N`, or by SIGTERM/SIGHUP/SIGINT as 143/129/130), and
//!    `cd "$HPCSERA_WORK_DIR"`;
//! 4. the rest of the configured script, unchanged.
//!
//! Nothing in the file comes from job parameters: they arrive only as `HPCSERA_PARAM_*`
//! environment variables. Even the exit file's path comes from the environment.
//!
//! The exit file is how the agent learns a finished job's exit code when the batch system no
//! longer knows the job (see [`crate::batch`]).
//!
//! This module must never put a job's parameters into the script text: they reach the script
//! only as environment variables.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot write the batch script {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a valid sub-job name for a file name")]
    BadName(String),
}

/// Where a sub-job's script and exit file live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedScript {
    pub path: PathBuf,
    pub exit_file: PathBuf,
}

const HEADER: &str = r#"# ---- hpcsera: generated header -----------------------------------------------------
# Job parameters reach this script only as environment variables (HPCSERA_PARAM_<name>);
# nothing in this file was built from them. When the script ends, its exit status is
# written to $HPCSERA_EXIT_FILE, so the agent knows it even when the batch system does not
# (and, when the job type records provenance of modules, `module list` to $HPCSERA_MODULES_FILE).
__hpcsera_exit() {
    if [ -n "${HPCSERA_MODULES_FILE:-}" ]; then
        { if command -v module >/dev/null 2>&1; then module list; else echo "no module command"; fi; } \
            >"$HPCSERA_MODULES_FILE" 2>&1
    fi
    if [ -n "${HPCSERA_EXIT_FILE:-}" ]; then
        printf '%s\n' "$1" >"$HPCSERA_EXIT_FILE.tmp.$$" &&
            mv -f -- "$HPCSERA_EXIT_FILE.tmp.$$" "$HPCSERA_EXIT_FILE"
    fi
}
trap '__hpcsera_rc=$?; trap - EXIT; __hpcsera_exit "$__hpcsera_rc"' EXIT
trap 'trap - EXIT; __hpcsera_exit 143; exit 143' TERM
trap 'trap - EXIT; __hpcsera_exit 129; exit 129' HUP
trap 'trap - EXIT; __hpcsera_exit 130; exit 130' INT
# Where the batch system cannot carry the environment safely (PBS), it comes in a file of
# NAME=value entries ended by NUL; each is exported verbatim (never evaluated).
if [ -n "${HPCSERA_ENV_FILE:-}" ]; then
    while IFS= read -r -d '' __hpcsera_kv; do
        case "$__hpcsera_kv" in HPCSERA_*=*) export "$__hpcsera_kv" ;; esac
    done <"$HPCSERA_ENV_FILE" || exit 1
    unset __hpcsera_kv
fi
cd -- "${HPCSERA_WORK_DIR:?HPCSERA_WORK_DIR is not set}" || exit 1
# ---- job script (from the agent's config) --------------------------------------------
"#;

/// Where a batch sub-job's script records `module list` when it ends (only when the job type
/// asks, through `HPCSERA_MODULES_FILE`): `<job dir>/.hpcsera-modules-<sub-job>`.
pub fn modules_file_path(job_dir: &Path, subjob: &str) -> PathBuf {
    job_dir.join(format!(".hpcsera-modules-{subjob}"))
}

/// The exit file of a sub-job: `<job dir>/.hpcsera-exit-<sub-job>`.
pub fn exit_file_path(job_dir: &Path, subjob: &str) -> PathBuf {
    job_dir.join(format!(".hpcsera-exit-{subjob}"))
}

/// The text of the rendered script (see the module docs).
pub fn render_text(script: &str) -> String {
    let mut directives = String::new();
    let mut body_start = 0;
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        let t = line.trim_start();
        if offset == 0 && t.starts_with("#!") {
            // The configured interpreter line; the rendered script is run by bash.
        } else if t.starts_with('#') || t.trim().is_empty() {
            directives.push_str(line);
        } else {
            break;
        }
        offset += line.len();
        body_start = offset;
    }
    let body = &script[body_start..];
    let mut out = String::with_capacity(script.len() + HEADER.len() + 16);
    out.push_str("#!/bin/bash\n");
    out.push_str(&directives);
    if !directives.is_empty() && !directives.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(HEADER);
    out.push_str(body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Renders `script` to `<job_dir>/<subjob>.sh` (mode 0700, written atomically) and removes a
/// stale exit file of an earlier attempt.
pub fn render_batch_script(
    job_dir: &Path,
    subjob: &str,
    script: &str,
) -> Result<RenderedScript, ScriptError> {
    if !hpcsera_api_types::is_valid_name(subjob, true) {
        return Err(ScriptError::BadName(subjob.into()));
    }
    let path = job_dir.join(format!("{subjob}.sh"));
    let exit_file = exit_file_path(job_dir, subjob);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScriptError::Io { path, source }
    };
    std::fs::create_dir_all(job_dir).map_err(io(job_dir))?;
    match std::fs::remove_file(&exit_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&exit_file)(e)),
    }
    let tmp = job_dir.join(format!(".{subjob}.sh.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o700)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(render_text(script).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(RenderedScript { path, exit_file })
}

/// The exit code a rendered script recorded, if it did.
pub fn read_exit_file(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_stay_on_top_and_shebang_is_replaced() {
        let text = "#!/bin/sh\n#SBATCH --time=1\n\n# note\necho hi\n#SBATCH --late\nexit 0";
        let r = render_text(text);
        assert!(r.starts_with("#!/bin/bash\n#SBATCH --time=1\n\n# note\n# ---- hpcsera"));
        assert!(r.ends_with("echo hi\n#SBATCH --late\nexit 0\n"));
        assert_eq!(r.matches("#!").count(), 1);
    }

    #[test]
    fn rendered_script_records_exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        for (text, code) in [
            ("echo ok", 0),
            ("exit 7", 7),
            ("false", 1),
            ("set -e\nfalse\necho not here", 1),
        ] {
            let r = render_batch_script(dir.path(), "run", text).unwrap();
            let st = std::process::Command::new(&r.path)
                .env("HPCSERA_EXIT_FILE", &r.exit_file)
                .env("HPCSERA_WORK_DIR", dir.path())
                .status()
                .unwrap();
            assert_eq!(st.code(), Some(code), "{text}");
            assert_eq!(read_exit_file(&r.exit_file), Some(code), "{text}");
        }
    }

    #[test]
    fn sigterm_is_recorded_as_143() {
        let dir = tempfile::tempdir().unwrap();
        let r = render_batch_script(dir.path(), "run", "sleep 30 & wait").unwrap();
        use std::os::unix::process::CommandExt;
        // In its own process group, so that the script's `sleep` (which outlives the shell,
        // as it would in a batch job until the batch system ends the job) is killed after.
        let mut child = std::process::Command::new(&r.path)
            .env("HPCSERA_EXIT_FILE", &r.exit_file)
            .env("HPCSERA_WORK_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        assert_eq!(read_exit_file(&r.exit_file), Some(143));
    }
}
