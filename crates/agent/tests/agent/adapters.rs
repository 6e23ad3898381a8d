//! The generic command adapter with the slurm, pbs and lsf presets, run end to end against
//! fake batch commands (small shell scripts) that print recorded outputs from
//! `tests/fixtures/` and log how they were called.

use hpcsera_agent::batch::command::{CommandAdapter, Templates};
use hpcsera_agent::config::BatchConfig;
use hpcsera_agent::{BatchAdapter, BatchJobRef, BatchPreset, BatchState, SubmitRequest};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A directory of fake batch commands; every call is logged, one line per call.
pub(crate) struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    pub(crate) fn new() -> Fake {
        Fake {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.path().join("calls.log")
    }
    /// Writes the fake program `name` with the shell `body`.
    pub(crate) fn program(&self, name: &str, body: &str) {
        let p = self.path().join(name);
        let text = format!(
            "#!/bin/sh\n{{ printf '%s' \"$(basename \"$0\")\"; for a in \"$@\"; do printf ' [%s]' \"$a\"; done; echo; }} >> '{}'\n{body}\n",
            self.log().display()
        );
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    pub(crate) fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
    /// The preset's adapter with every command's program replaced by the fake of that name.
    pub(crate) fn adapter(&self, preset: BatchPreset) -> CommandAdapter {
        let t = Templates::preset(preset).unwrap();
        let fake = |argv: &Vec<String>| -> Option<Vec<String>> {
            if argv.is_empty() {
                return Some(Vec::new());
            }
            let mut v = argv.clone();
            v[0] = self.path().join(&argv[0]).to_string_lossy().into_owned();
            Some(v)
        };
        CommandAdapter::from_config(&BatchConfig {
            preset,
            submit: fake(&t.submit),
            status: fake(&t.status),
            accounting: fake(&t.accounting),
            cancel: fake(&t.cancel),
            hold: fake(&t.hold),
            release: fake(&t.release),
            find: fake(&t.find),
            submit_options: vec!["--account=proj 42".into()],
            ..BatchConfig::default()
        })
        .unwrap()
    }
}

pub(crate) fn cat(f: &str) -> String {
    format!("cat '{}'", fixture(f).display())
}

pub(crate) fn refs(ids: &[&str]) -> Vec<BatchJobRef> {
    ids.iter().map(|i| BatchJobRef::new(*i, None)).collect()
}

pub(crate) fn request(dir: &Path) -> SubmitRequest {
    SubmitRequest {
        script_path: dir.join("run.sh"),
        work_dir: dir.to_path_buf(),
        job_name: "hpcsera-j1-run".into(),
        env: vec![
            ("HPCSERA_JOB_ID".into(), "j1".into()),
            (
                "HPCSERA_PARAM_x".into(),
                "a b; $(touch /tmp/x) `y`\n'\"".into(),
            ),
        ],
        resources: Default::default(),
        options: vec!["--time=00:10:00".into()],
        stdout_path: dir.join("run.out"),
        stderr_path: dir.join("run.err"),
    }
}

fn failed(code: Option<i32>) -> impl Fn(&BatchState) -> bool {
    move |s| matches!(s, BatchState::Failed { exit_code, .. } if *exit_code == code)
}

// ---- PBS -------------------------------------------------------------------------------

#[tokio::test]
async fn pbs_submit_status_and_operations() {
    let fake = Fake::new();
    fake.program(
        "qsub",
        &format!(
            "cp \"$HPCSERA_ENV_FILE\" '{}/env.txt'\n{}",
            fake.path().display(),
            cat("pbs_qsub.txt")
        ),
    );
    fake.program("qstat", &cat("pbs_qstat_f_json.json"));
    for p in ["qdel", "qhold", "qrls"] {
        fake.program(p, "exit 0");
    }
    let a = fake.adapter(BatchPreset::Pbs);
    let work = tempfile::tempdir().unwrap();
    let id = a.submit(&request(work.path())).await.unwrap();
    assert_eq!(id, "1234.pbs01");
    let w = work.path().display();
    assert_eq!(
        fake.calls()[0],
        format!("qsub [-V] [-N] [hpcsera-j1-run] [-o] [{w}/run.out] [-e] [{w}/run.err] [--account=proj 42] [--time=00:10:00] [{w}/run.sh]")
    );
    // The job's environment comes in the file qsub is told of, values verbatim.
    let env = std::fs::read_to_string(fake.path().join("env.txt")).unwrap();
    assert_eq!(
        env,
        "HPCSERA_JOB_ID=j1\0HPCSERA_PARAM_x=a b; $(touch /tmp/x) `y`\n'\"\0"
    );

    let ids = [
        "1234.pbs01",
        "1235.pbs01",
        "1236.pbs01",
        "1237.pbs01",
        "1238.pbs01",
        "1239.pbs01",
        "1240.pbs01",
        "1241.pbs01",
        "9999.pbs01",
    ];
    let before = a.commands_spawned();
    let st = a.status_all(&refs(&ids)).await.unwrap();
    assert_eq!(a.commands_spawned() - before, 1);
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!(
            "qstat [-f] [-F] [json] [-x] {}",
            ids.map(|i| format!("[{i}]")).join(" ")
        )
    );
    assert_eq!(st["1234.pbs01"], BatchState::Pending);
    assert_eq!(st["1235.pbs01"], BatchState::Running);
    assert_eq!(st["1236.pbs01"], BatchState::Held);
    assert_eq!(st["1237.pbs01"], BatchState::Completed { exit_code: 0 });
    assert!(failed(Some(3))(&st["1238.pbs01"]), "{:?}", st["1238.pbs01"]);
    assert_eq!(st["1239.pbs01"], BatchState::Running); // E: exiting
    assert!(
        failed(Some(143))(&st["1240.pbs01"]),
        "{:?}",
        st["1240.pbs01"]
    ); // 256 + SIGTERM
    assert!(failed(None)(&st["1241.pbs01"]), "{:?}", st["1241.pbs01"]);
    assert_eq!(st["9999.pbs01"], BatchState::Unknown);

    a.hold("1234.pbs01").await.unwrap();
    a.release("1234.pbs01").await.unwrap();
    a.cancel("1240.pbs01").await.unwrap();
    let calls = fake.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        [
            "qhold [1234.pbs01]",
            "qrls [1234.pbs01]",
            "qdel [1240.pbs01]"
        ]
    );
    // After our qdel, "killed by SIGTERM" reads as cancelled.
    let st = a.status_all(&refs(&["1240.pbs01"])).await.unwrap();
    assert_eq!(st["1240.pbs01"], BatchState::Cancelled);

    let found = a
        .find_by_name(&["hpcsera-j2-run".to_string(), "hpcsera-nope-run".to_string()])
        .await
        .unwrap();
    assert_eq!(
        found,
        HashMap::from([("hpcsera-j2-run".to_string(), "1235.pbs01".to_string())])
    );
}

// ---- LSF -------------------------------------------------------------------------------

#[tokio::test]
async fn lsf_submit_status_and_operations() {
    let fake = Fake::new();
    fake.program("bsub", &cat("lsf_bsub.txt"));
    // `bjobs -o "jobid job_name"` (find) vs `-o "jobid stat exit_code"` (status).
    fake.program(
        "bjobs",
        &format!(
            "case \"$*\" in *job_name*) {} ;; *) {}; exit 255 ;; esac",
            cat("lsf_bjobs_names.json"),
            cat("lsf_bjobs_json.json")
        ),
    );
    for p in ["bkill", "bstop", "bresume"] {
        fake.program(p, "exit 0");
    }
    let a = fake.adapter(BatchPreset::Lsf);
    let work = tempfile::tempdir().unwrap();
    let id = a.submit(&request(work.path())).await.unwrap();
    assert_eq!(id, "4711");
    let w = work.path().display();
    assert_eq!(
        fake.calls()[0],
        format!("bsub [-J] [hpcsera-j1-run] [-o] [{w}/run.out] [-e] [{w}/run.err] [-cwd] [{w}] [--account=proj 42] [--time=00:10:00] [{w}/run.sh]")
    );
    let ids = [
        "4711", "4712", "4713", "4714", "4715", "4716", "4717", "9999",
    ];
    // bjobs exits non-zero because one id is unknown; its JSON is still used.
    let st = a.status_all(&refs(&ids)).await.unwrap();
    assert_eq!(
        fake.calls().last().unwrap(),
        &format!(
            "bjobs [-a] [-json] [-o] [jobid stat exit_code queue proj_name nexec_host nalloc_slot runtimelimit rsvid] {}",
            ids.map(|i| format!("[{i}]")).join(" ")
        )
    );
    assert_eq!(st["4711"], BatchState::Pending);
    assert_eq!(st["4712"], BatchState::Running);
    assert_eq!(st["4713"], BatchState::Completed { exit_code: 0 });
    assert!(failed(Some(3))(&st["4714"]), "{:?}", st["4714"]);
    assert_eq!(st["4715"], BatchState::Held);
    assert_eq!(st["4716"], BatchState::Held);
    assert_eq!(st["4717"], BatchState::Running);
    assert_eq!(st["9999"], BatchState::Unknown);

    a.hold("4711").await.unwrap();
    a.release("4711").await.unwrap();
    a.cancel("4712").await.unwrap();
    let calls = fake.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        ["bstop [4711]", "bresume [4711]", "bkill [4712]"]
    );

    let found = a
        .find_by_name(&["hpcsera-j1-run".to_string(), "hpcsera-j2-run".to_string()])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["hpcsera-j1-run"], "4711");
}

// ---- Slurm -----------------------------------------------------------------------------

#[tokio::test]
async fn slurm_submit_status_exit_files_and_accounting() {
    let fake = Fake::new();
    fake.program("sbatch", &cat("slurm_sbatch.txt"));
    fake.program(
        "squeue",
        &format!(
            "case \"$*\" in *%j*) {} ;; *) {} ;; esac",
            cat("slurm_squeue_names.txt"),
            cat("slurm_squeue.txt")
        ),
    );
    fake.program("sacct", &cat("slurm_sacct.txt"));
    fake.program("scancel", "exit 0");
    fake.program("scontrol", "exit 0");
    let a = fake.adapter(BatchPreset::Slurm);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    assert_eq!(a.submit(&request(w)).await.unwrap(), "5678");
    assert_eq!(
        fake.calls()[0],
        format!(
            "sbatch [--parsable] [--job-name=hpcsera-j1-run] [--output={d}/run.out] [--error={d}/run.err] [--chdir={d}] [--export=ALL] [--account=proj 42] [--time=00:10:00] [{d}/run.sh]",
            d = w.display()
        )
    );

    let exit = |name: &str, code: &str| {
        let p = w.join(name);
        std::fs::write(&p, format!("{code}\n")).unwrap();
        Some(p)
    };
    let jobs = vec![
        BatchJobRef::new("5678", None),
        BatchJobRef::new("5679", None),
        BatchJobRef::new("5680", None),
        BatchJobRef::new("5681", exit("e5681", "0")),
        BatchJobRef::new("5682", exit("e5682", "7")),
        BatchJobRef::new("5683", None),
        BatchJobRef::new("5684", None),
        BatchJobRef::new("5685", None),
        BatchJobRef::new("5688", None),
        // Gone from squeue; the exit file tells.
        BatchJobRef::new("5686", exit("e5686", "0")),
        BatchJobRef::new("5687", exit("e5687", "4")),
        // Gone, no exit file: accounting is asked, once, for all of them.
        BatchJobRef::new("5690", Some(w.join("missing"))),
        BatchJobRef::new("5691", None),
        BatchJobRef::new("5692", None),
        BatchJobRef::new("5693", None),
    ];
    let before = a.commands_spawned();
    let st = a.status_all(&jobs).await.unwrap();
    assert_eq!(a.commands_spawned() - before, 2, "one squeue + one sacct");
    let calls = fake.calls();
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        calls[calls.len() - 2],
        format!(
            "squeue [--noheader] [--states=all] [--format=%i|%T|%r|%D|%C|%l|%P|%a|%v|%m] [--jobs={}]",
            ids.join(",")
        )
    );
    assert_eq!(
        calls[calls.len() - 1],
        "sacct [--noheader] [--parsable2] [--allocations] [--format=JobID,State,ExitCode] [--jobs=5690,5691,5692,5693]"
    );
    assert_eq!(st["5678"], BatchState::Pending);
    assert_eq!(st["5679"], BatchState::Running);
    assert_eq!(st["5680"], BatchState::Held);
    assert_eq!(st["5688"], BatchState::Held);
    assert_eq!(st["5681"], BatchState::Completed { exit_code: 0 });
    assert!(failed(Some(7))(&st["5682"]), "{:?}", st["5682"]);
    assert_eq!(st["5683"], BatchState::Cancelled);
    assert!(matches!(&st["5684"], BatchState::Failed { reason, .. } if reason.contains("TIMEOUT")));
    assert_eq!(st["5685"], BatchState::Running);
    assert_eq!(st["5686"], BatchState::Completed { exit_code: 0 });
    assert!(failed(Some(4))(&st["5687"]), "{:?}", st["5687"]);
    assert_eq!(st["5690"], BatchState::Completed { exit_code: 0 });
    assert_eq!(st["5691"], BatchState::Cancelled);
    assert!(failed(Some(2))(&st["5692"]), "{:?}", st["5692"]);
    assert_eq!(st["5693"], BatchState::Unknown);
    assert_eq!(st.len(), jobs.len());

    a.hold("5678").await.unwrap();
    a.release("5678").await.unwrap();
    a.cancel("5679").await.unwrap();
    let calls = fake.calls();
    assert_eq!(
        calls[calls.len() - 3..],
        [
            "scontrol [hold] [5678]",
            "scontrol [release] [5678]",
            "scancel [5679]"
        ]
    );
    let found = a
        .find_by_name(&["hpcsera-j1-run".to_string(), "hpcsera-j9-run".to_string()])
        .await
        .unwrap();
    assert_eq!(
        found,
        HashMap::from([("hpcsera-j1-run".to_string(), "5678".to_string())])
    );
    assert_eq!(
        fake.calls().last().unwrap(),
        "squeue [--noheader] [--states=all] [--format=%i|%j] [--name=hpcsera-j1-run,hpcsera-j9-run]"
    );
}

#[tokio::test]
async fn slurm_single_unknown_id_is_not_an_error() {
    // `squeue --jobs=ID` with one unknown id exits 1 with "Invalid job id specified".
    let fake = Fake::new();
    fake.program(
        "squeue",
        "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
    );
    fake.program(
        "sacct",
        "echo 'Slurm accounting storage is disabled' >&2; exit 1",
    );
    let a = fake.adapter(BatchPreset::Slurm);
    let st = a.status_all(&refs(&["77"])).await.unwrap();
    assert_eq!(st["77"], BatchState::Unknown);
}

#[tokio::test]
async fn failing_commands_are_clear_errors() {
    let fake = Fake::new();
    fake.program(
        "sbatch",
        "echo 'sbatch: error: Batch job submission failed: Invalid account' >&2; exit 1",
    );
    fake.program(
        "squeue",
        "echo 'squeue: error: slurm_receive_msg: Socket timed out' >&2; exit 1",
    );
    let a = fake.adapter(BatchPreset::Slurm);
    let work = tempfile::tempdir().unwrap();
    let e = a
        .submit(&request(work.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Invalid account") && e.contains("exit code 1"),
        "{e}"
    );
    let e = a.status_all(&refs(&["1"])).await.unwrap_err().to_string();
    assert!(e.contains("Socket timed out"), "{e}");
    // A program that does not exist.
    let a = CommandAdapter::from_config(&BatchConfig {
        preset: BatchPreset::Slurm,
        status: Some(vec!["/nonexistent/squeue".into(), "{ids}".into()]),
        ..BatchConfig::default()
    })
    .unwrap();
    let e = a.status_all(&refs(&["1"])).await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/squeue"), "{e}");
}

#[tokio::test]
async fn pbs_never_carries_a_parameter_value_in_its_environment_list() {
    // PBS turns the environment `qsub -V` exports into one comma-separated Variable_List;
    // several PBS versions split values at commas. A value with ",NAME=val" must not set NAME.
    let fake = Fake::new();
    fake.program(
        "qsub",
        &format!(
            "env > '{}/qsub-env.txt'
{}",
            fake.path().display(),
            cat("pbs_qsub.txt")
        ),
    );
    let a = fake.adapter(BatchPreset::Pbs);
    let work = tempfile::tempdir().unwrap();
    let mut req = request(work.path());
    let evil = "a,EVIL=1,HPCSERA_JOB_ID=other\\,x";
    req.env.push(("HPCSERA_PARAM_y".into(), evil.into()));
    req.env
        .push(("HPCSERA_WORK_DIR".into(), work.path().display().to_string()));
    std::fs::write(
        &req.script_path,
        hpcsera_agent::script::render_text(
            "printf '%s|' \"$HPCSERA_PARAM_x\" \"$HPCSERA_PARAM_y\" \"${EVIL-unset}\" \"$HPCSERA_JOB_ID\"",
        ),
    )
    .unwrap();
    assert_eq!(a.submit(&req).await.unwrap(), "1234.pbs01");
    let qsub_env = std::fs::read_to_string(fake.path().join("qsub-env.txt")).unwrap();
    assert!(
        !qsub_env.contains("HPCSERA_PARAM_"),
        "parameters are not in qsub's environment: {qsub_env}"
    );
    let file = qsub_env
        .lines()
        .find_map(|l| l.strip_prefix("HPCSERA_ENV_FILE="))
        .expect("qsub gets the job's environment file");
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The job (the rendered script, run as PBS would with only the file's path) sees every
    // value verbatim and nothing else.
    let out = std::process::Command::new("/bin/bash")
        .arg(&req.script_path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HPCSERA_ENV_FILE", file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("a b; $(touch /tmp/x) `y`\n'\"|{evil}|unset|j1|")
    );
}

// ---- one status command per cycle -----------------------------------------------------

/// Fake status commands that answer RUNNING for every id they are asked about.
fn echoing_fake(preset: BatchPreset) -> Fake {
    let fake = Fake::new();
    match preset {
        BatchPreset::Slurm => fake.program(
            "squeue",
            "for a in \"$@\"; do case $a in --jobs=*) ids=${a#--jobs=};; esac; done\n\
             echo \"$ids\" | tr ',' '\\n' | while read -r id; do echo \"$id|RUNNING|None\"; done",
        ),
        BatchPreset::Pbs => fake.program(
            "qstat",
            "printf '{\"Jobs\":{'; sep=''\n\
             for a in \"$@\"; do case $a in -*|json) ;; *) printf '%s\"%s\":{\"job_state\":\"R\"}' \"$sep\" \"$a\"; sep=',';; esac; done\n\
             echo '}}'",
        ),
        BatchPreset::Lsf => fake.program(
            "bjobs",
            "printf '{\"RECORDS\":['; sep=''\n\
             for a in \"$@\"; do case $a in -*|*' '*) ;; *) printf '%s{\"JOBID\":\"%s\",\"STAT\":\"RUN\",\"EXIT_CODE\":\"\"}' \"$sep\" \"$a\"; sep=',';; esac; done\n\
             echo ']}'",
        ),
        BatchPreset::Local => unreachable!(),
    }
    fake
}

#[tokio::test]
async fn one_status_command_for_1_10_and_100_jobs() {
    for preset in [BatchPreset::Slurm, BatchPreset::Pbs, BatchPreset::Lsf] {
        let fake = echoing_fake(preset);
        let a = fake.adapter(preset);
        for n in [1usize, 10, 100] {
            let ids: Vec<String> = (0..n).map(|i| format!("{}", 1000 + i)).collect();
            let jobs: Vec<BatchJobRef> = ids
                .iter()
                .map(|i| BatchJobRef::new(i.clone(), None))
                .collect();
            let before = a.commands_spawned();
            let calls_before = fake.calls().len();
            let st = a.status_all(&jobs).await.unwrap();
            assert_eq!(a.commands_spawned() - before, 1, "{preset:?} with {n} jobs");
            assert_eq!(
                fake.calls().len() - calls_before,
                1,
                "{preset:?} with {n} jobs"
            );
            assert_eq!(st.len(), n);
            assert!(
                st.values().all(|s| *s == BatchState::Running),
                "{preset:?} {st:?}"
            );
        }
        // No jobs, no command.
        let before = a.commands_spawned();
        assert!(a.status_all(&[]).await.unwrap().is_empty());
        assert_eq!(a.commands_spawned(), before);
    }
}

#[test]
fn state_table_overrides_from_config() {
    let a = CommandAdapter::from_config(&BatchConfig {
        preset: BatchPreset::Slurm,
        states: [("PREEMPTED".to_string(), "pending".to_string())].into(),
        ..BatchConfig::default()
    });
    assert!(a.is_ok());
    let bad = CommandAdapter::from_config(&BatchConfig {
        preset: BatchPreset::Slurm,
        states: [("X".to_string(), "paused".to_string())].into(),
        ..BatchConfig::default()
    });
    assert!(bad.is_err());
    assert!(CommandAdapter::preset(BatchPreset::Local).is_err());
}
