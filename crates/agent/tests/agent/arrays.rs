//! Job arrays of sweep members, against fake batch commands printing recorded outputs
//! (`tests/fixtures/*_array.*`): the submit's argv per preset, each member's task id, one
//! status query for all tasks, operations on one task, the wrapper selecting its member by
//! the task index without putting parameters into shell text, and the journal adopting an
//! array's tasks after a crash before the batch ids were recorded.

use crate::adapters::{cat, Fake};
use hpcsera_agent::batch::array::{wrapper_path, ArrayRequest};
use hpcsera_agent::script::render_batch_script;
use hpcsera_agent::{BatchAdapter, BatchJobRef, BatchPreset, BatchState, Journal, SubmitRequest};
use std::path::Path;

const NAME: &str = "hpcsera-array-j0-run";
/// A parameter value a shell would love to interpret.
const NASTY: &str = "a b; $(touch /tmp/hpcsera-pwned) `id` \"q\" 'r'\n*";

/// Three members rendered as the agent renders them, each in its own job directory.
fn members(work: &Path) -> Vec<SubmitRequest> {
    (0..3)
        .map(|i| {
            let dir = work.join(format!("j{i}"));
            let script =
                "echo \"member $HPCSERA_PARAM_n: $HPCSERA_PARAM_s\"\nexit $HPCSERA_PARAM_n";
            let r = render_batch_script(&dir, "run", script).unwrap();
            SubmitRequest {
                script_path: r.path,
                work_dir: dir.clone(),
                job_name: format!("hpcsera-j{i}-run"),
                env: vec![
                    (
                        "HPCSERA_EXIT_FILE".into(),
                        r.exit_file.display().to_string(),
                    ),
                    ("HPCSERA_PARAM_n".into(), i.to_string()),
                    ("HPCSERA_PARAM_s".into(), NASTY.into()),
                    ("HPCSERA_WORK_DIR".into(), dir.display().to_string()),
                ],
                resources: Default::default(),
                options: vec!["--time=00:10:00".into()],
                stdout_path: dir.join("run.out"),
                stderr_path: dir.join("run.err"),
            }
        })
        .collect()
}

fn array(work: &Path, throttle: Option<u32>) -> ArrayRequest {
    ArrayRequest {
        dir: work.join(".arrays").join(NAME),
        job_name: NAME.into(),
        members: members(work),
        throttle,
    }
}

fn refs(ids: &[String]) -> Vec<BatchJobRef> {
    ids.iter()
        .map(|i| BatchJobRef::new(i.clone(), None))
        .collect()
}

#[tokio::test]
async fn slurm_array_one_submit_task_ids_one_status_query_and_one_tasks_cancel() {
    let fake = Fake::new();
    fake.program("sbatch", "echo 9300");
    fake.program("squeue", &cat("slurm_squeue_array.txt"));
    fake.program("scancel", "exit 0");
    let a = fake.adapter(BatchPreset::Slurm);
    assert!(a.supports_arrays());
    let work = tempfile::tempdir().unwrap();
    let req = array(work.path(), Some(2));
    let ids = a.submit_array(&req).await.unwrap();
    assert_eq!(ids, ["9300_0", "9300_1", "9300_2"]);
    let d = req.dir.display();
    assert_eq!(
        fake.calls()[0],
        format!("sbatch [--parsable] [--job-name={NAME}] [--output={d}/task-%a.log] [--error={d}/task-%a.log] \
                 [--chdir={d}] [--export=ALL] [--account=proj 42] [--time=00:10:00] [--array=0-2%2] [{d}/array.sh]")
    );
    let st = a.status_all(&refs(&ids)).await.unwrap();
    assert_eq!(fake.calls().len(), 2, "one status query for all tasks");
    assert!(
        fake.calls()[1].contains("[--array]")
            && fake.calls()[1].contains("--jobs=9300_0,9300_1,9300_2")
    );
    assert_eq!(st["9300_0"], BatchState::Completed { exit_code: 0 });
    assert_eq!(st["9300_1"], BatchState::Running);
    assert_eq!(st["9300_2"], BatchState::Pending);
    a.cancel("9300_1").await.unwrap();
    assert_eq!(fake.calls()[2], "scancel [9300_1]");
}

#[tokio::test]
async fn pbs_array_uses_j_and_subjob_ids() {
    let fake = Fake::new();
    fake.program("qsub", &cat("pbs_qsub_array.txt"));
    fake.program("qstat", &cat("pbs_qstat_f_json_array.json"));
    for p in ["qdel", "qhold", "qrls"] {
        fake.program(p, "exit 0");
    }
    let a = fake.adapter(BatchPreset::Pbs);
    let work = tempfile::tempdir().unwrap();
    let req = array(work.path(), None);
    let ids = a.submit_array(&req).await.unwrap();
    assert_eq!(ids, ["1240[0].pbs01", "1240[1].pbs01", "1240[2].pbs01"]);
    let d = req.dir.display();
    assert_eq!(
        fake.calls()[0],
        format!("qsub [-V] [-N] [{NAME}] [-o] [{d}/task-^array_index^.log] [-e] [{d}/task-^array_index^.log] \
                 [--account=proj 42] [--time=00:10:00] [-J] [0-2] [{d}/array.sh]")
    );
    let st = a.status_all(&refs(&ids)).await.unwrap();
    assert_eq!(st["1240[0].pbs01"], BatchState::Completed { exit_code: 0 });
    assert_eq!(st["1240[1].pbs01"], BatchState::Running);
    assert!(
        matches!(
            st["1240[2].pbs01"],
            BatchState::Failed {
                exit_code: Some(3),
                ..
            }
        ),
        "{st:?}"
    );
    a.hold("1240[1].pbs01").await.unwrap();
    a.cancel("1240[1].pbs01").await.unwrap();
    assert_eq!(
        fake.calls()[2..],
        ["qhold [1240[1].pbs01]", "qdel [1240[1].pbs01]"]
    );
    // Each member's environment is in its own file, never in qsub's variable list.
    for m in &req.members {
        let env = m.script_path.with_file_name(".hpcsera-env-run.sh");
        let text = std::fs::read_to_string(&env).unwrap();
        assert!(text.contains(NASTY), "{text:?}");
    }
}

#[tokio::test]
async fn lsf_array_names_elements_from_one() {
    let fake = Fake::new();
    fake.program("bsub", &cat("lsf_bsub_array.txt"));
    fake.program("bjobs", &cat("lsf_bjobs_json_array.json"));
    fake.program("bkill", "exit 0");
    let a = fake.adapter(BatchPreset::Lsf);
    let work = tempfile::tempdir().unwrap();
    let req = array(work.path(), Some(2));
    let ids = a.submit_array(&req).await.unwrap();
    assert_eq!(ids, ["4800[1]", "4800[2]", "4800[3]"]);
    let d = req.dir.display();
    assert_eq!(
        fake.calls()[0],
        format!(
            "bsub [-J] [{NAME}[1-3]%2] [-o] [{d}/task-%I.log] [-e] [{d}/task-%I.log] [-cwd] [{d}] \
                 [--account=proj 42] [--time=00:10:00] [{d}/array.sh]"
        )
    );
    let st = a.status_all(&refs(&ids)).await.unwrap();
    assert_eq!(st["4800[1]"], BatchState::Completed { exit_code: 0 });
    assert_eq!(st["4800[2]"], BatchState::Running);
    assert!(
        matches!(
            st["4800[3]"],
            BatchState::Failed {
                exit_code: Some(3),
                ..
            }
        ),
        "{st:?}"
    );
    a.cancel("4800[2]").await.unwrap();
    assert_eq!(fake.calls()[2], "bkill [4800[2]]");
    // A restart finds the array by name although LSF shows its elements as NAME[i].
    fake.program("bjobs", &cat("lsf_bjobs_names_array.json"));
    let found = a.find_by_name(&[NAME.to_string()]).await.unwrap();
    assert_eq!(a.array_task_id(&found[NAME], 0), "4800[1]");
}

#[tokio::test]
async fn the_wrapper_runs_the_tasks_member_with_its_own_environment_and_files() {
    let fake = Fake::new();
    fake.program("sbatch", "echo 9300");
    let a = fake.adapter(BatchPreset::Slurm);
    let work = tempfile::tempdir().unwrap();
    let req = array(work.path(), None);
    a.submit_array(&req).await.unwrap();
    // As Slurm (SLURM_ARRAY_TASK_ID, 0-based) and LSF (LSB_JOBINDEX, 1-based) start a task.
    for (var, value, member) in [("SLURM_ARRAY_TASK_ID", "1", 1), ("LSB_JOBINDEX", "3", 2)] {
        let st = std::process::Command::new(wrapper_path(&req.dir))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HPCSERA_ARRAY_DIR", &req.dir)
            .env(var, value)
            .status()
            .unwrap();
        let m = &req.members[member];
        assert_eq!(st.code(), Some(member as i32), "the member's own exit code");
        let out = std::fs::read_to_string(&m.stdout_path).unwrap();
        assert_eq!(out, format!("member {member}: {NASTY}\n"));
        let exit = m.script_path.with_file_name(".hpcsera-exit-run");
        assert_eq!(
            std::fs::read_to_string(exit).unwrap().trim(),
            member.to_string()
        );
    }
    assert!(!Path::new("/tmp/hpcsera-pwned").exists());
    assert!(!req.members[0].stdout_path.exists(), "task 0 did not run");
    // Without an index the wrapper refuses to guess.
    let st = std::process::Command::new(wrapper_path(&req.dir))
        .env_clear()
        .env("HPCSERA_ARRAY_DIR", &req.dir)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1));
}

#[tokio::test]
async fn a_crash_between_the_arrays_submit_and_its_ids_adopts_each_task() {
    let fake = Fake::new();
    fake.program("squeue", &cat("slurm_squeue_names_array.txt"));
    let a = fake.adapter(BatchPreset::Slurm);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path().join("journal")).unwrap();
    let exit = dir.path().join("exit");
    for (i, job) in ["j0", "j1", "j2"].iter().enumerate() {
        journal
            .record_array_intent(job, "run", NAME, &exit, i as u32)
            .unwrap();
    }
    let rec = journal.reconcile(&a).await.unwrap();
    assert_eq!(rec.adopted.len(), 3, "{rec:?}");
    assert!(rec.not_submitted.is_empty());
    assert_eq!(fake.calls().len(), 1, "one find query for the whole array");
    for (i, job) in ["j0", "j1", "j2"].iter().enumerate() {
        let r = journal.get(job).unwrap().unwrap();
        assert_eq!(
            r.sub_jobs["run"].batch_id.as_deref(),
            Some(format!("9300_{i}").as_str())
        );
    }
    // An array found nowhere was never submitted: its members go again.
    let journal2 = Journal::open(dir.path().join("journal2")).unwrap();
    journal2
        .record_array_intent("k0", "run", "hpcsera-array-k0-run", &exit, 0)
        .unwrap();
    let rec = journal2.reconcile(&a).await.unwrap();
    assert_eq!(rec.not_submitted.len(), 1);
}
