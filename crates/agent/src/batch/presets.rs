//! The command templates (argv arrays) of the batch systems the agent knows: the presets
//! `slurm`, `pbs` and `lsf` (see the table in [`super::command`]), each command overridable
//! in the config.
//!
//! Data only: this module must never run a command.

use super::BatchPreset;

/// The command templates of a batch system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    pub submit: Vec<String>,
    pub status: Vec<String>,
    /// Empty: no accounting fallback.
    pub accounting: Vec<String>,
    pub cancel: Vec<String>,
    pub hold: Vec<String>,
    pub release: Vec<String>,
    pub find: Vec<String>,
    /// What the batch system says about one batch job, for the provenance manifest (`{id}`).
    pub report: Vec<String>,
    /// The batch system's version, for the provenance manifest.
    pub version: Vec<String>,
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Templates {
    /// The preset's templates (`None` for `local`, which runs no commands).
    pub fn preset(p: BatchPreset) -> Option<Templates> {
        Some(match p {
            BatchPreset::Slurm => Templates::slurm(),
            BatchPreset::Pbs => Templates::pbs(),
            BatchPreset::Lsf => Templates::lsf(),
            BatchPreset::Local => return None,
        })
    }

    fn slurm() -> Templates {
        Templates {
            submit: argv(&[
                "sbatch",
                "--parsable",
                "--job-name={job_name}",
                "--output={stdout}",
                "--error={stderr}",
                "--chdir={work_dir}",
                "--export=ALL",
                "{options}",
                "{script}",
            ]),
            status: argv(&[
                "squeue",
                "--noheader",
                "--states=all",
                "--format=%i|%T|%r|%D|%C|%l|%P|%a|%v|%m",
                "--jobs={ids}",
            ]),
            accounting: argv(&[
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--format=JobID,State,ExitCode",
                "--jobs={ids}",
            ]),
            cancel: argv(&["scancel", "{id}"]),
            hold: argv(&["scontrol", "hold", "{id}"]),
            release: argv(&["scontrol", "release", "{id}"]),
            find: argv(&[
                "squeue",
                "--noheader",
                "--states=all",
                "--format=%i|%j",
                "--name={names}",
            ]),
            report: argv(&["scontrol", "show", "job", "{id}"]),
            version: argv(&["sbatch", "--version"]),
        }
    }

    fn pbs() -> Templates {
        Templates {
            submit: argv(&[
                "qsub",
                "-V",
                "-N",
                "{job_name}",
                "-o",
                "{stdout}",
                "-e",
                "{stderr}",
                "{options}",
                "{script}",
            ]),
            status: argv(&["qstat", "-f", "-F", "json", "-x", "{id_list}"]),
            accounting: Vec::new(),
            cancel: argv(&["qdel", "{id}"]),
            hold: argv(&["qhold", "{id}"]),
            release: argv(&["qrls", "{id}"]),
            find: argv(&["qstat", "-f", "-F", "json", "-x"]),
            report: argv(&["qstat", "-f", "-x", "{id}"]),
            version: argv(&["qstat", "--version"]),
        }
    }

    fn lsf() -> Templates {
        Templates {
            submit: argv(&[
                "bsub",
                "-J",
                "{job_name}",
                "-o",
                "{stdout}",
                "-e",
                "{stderr}",
                "-cwd",
                "{work_dir}",
                "{options}",
                "{script}",
            ]),
            status: argv(&[
                "bjobs",
                "-a",
                "-json",
                "-o",
                "jobid stat exit_code queue proj_name nexec_host nalloc_slot runtimelimit rsvid",
                "{id_list}",
            ]),
            accounting: Vec::new(),
            cancel: argv(&["bkill", "{id}"]),
            hold: argv(&["bstop", "{id}"]),
            release: argv(&["bresume", "{id}"]),
            find: argv(&["bjobs", "-a", "-json", "-o", "jobid job_name"]),
            report: argv(&["bjobs", "-l", "{id}"]),
            version: argv(&["lsid"]),
        }
    }
}
