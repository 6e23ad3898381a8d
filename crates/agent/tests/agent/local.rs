//! The local adapter end to end: rendered scripts run as child processes, parameters arrive
//! verbatim through the environment, nothing in them is executed, cancel kills, and the
//! state survives a new adapter instance (an agent restart).

use crate::common::{assert_failed_with, run_request};
use hpcsera_agent::batch::LocalAdapter;
use hpcsera_agent::config::AgentConfig;
use hpcsera_agent::env::{batch_env, batch_job_name, job_dir, JobContext};
use hpcsera_agent::script::render_batch_script;
use hpcsera_agent::{BatchAdapter, BatchError, BatchJobRef, BatchState, SubmitRequest};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Renders and submits a script the way the agent does.
fn prepare(
    work: &Path,
    job_id: &str,
    script: &str,
    params: &Map<String, Value>,
) -> (SubmitRequest, PathBuf) {
    let dir = job_dir(work, job_id).unwrap();
    let r = render_batch_script(&dir, "run", script).unwrap();
    run_request(&dir, r, (job_id, "t", "local"), params, vec![])
}

async fn wait_for(
    a: &dyn BatchAdapter,
    job: &BatchJobRef,
    done: impl Fn(&BatchState) -> bool,
) -> BatchState {
    let start = Instant::now();
    loop {
        let st = a.status_all(std::slice::from_ref(job)).await.unwrap();
        let s = st[&job.id].clone();
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "still {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn params(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn exit_code_and_output() {
    let work = tempfile::tempdir().unwrap();
    let a = LocalAdapter::new(work.path().join(".local-batch")).unwrap();
    let value = "hello \"world\" $HOME `id` $(id)\nsecond line";
    let (req, exit_file) = prepare(
        work.path(),
        "j1",
        "printf '%s' \"$HPCSERA_PARAM_x\"\necho to-stderr >&2\nexit 3\n",
        &params(json!({ "x": value })),
    );
    let id = a.submit(&req).await.unwrap();
    assert!(id.starts_with("local-"));
    let job = BatchJobRef::new(id, Some(exit_file.clone()));
    let st = wait_for(&a, &job, BatchState::is_terminal).await;
    assert_failed_with(&st, 3);
    assert_eq!(std::fs::read_to_string(&req.stdout_path).unwrap(), value);
    assert_eq!(
        std::fs::read_to_string(&req.stderr_path).unwrap(),
        "to-stderr\n"
    );
    // The rendered script's own exit file agrees, and the script is kept in the work dir.
    assert_eq!(hpcsera_agent::script::read_exit_file(&exit_file), Some(3));
    assert!(req.script_path.starts_with(work.path().join("j1")));
    // It ran in the job's work dir.
    let (req2, ef2) = prepare(work.path(), "j2", "pwd; exit 0", &Map::new());
    let job2 = BatchJobRef::new(a.submit(&req2).await.unwrap(), Some(ef2));
    assert_eq!(
        wait_for(&a, &job2, BatchState::is_terminal).await,
        BatchState::Completed { exit_code: 0 }
    );
    let pwd = std::fs::read_to_string(&req2.stdout_path).unwrap();
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        work.path().join("j2").canonicalize().unwrap()
    );
    assert!(matches!(
        a.hold(&job.id).await,
        Err(BatchError::Unsupported { .. })
    ));
    assert!(matches!(
        a.release(&job.id).await,
        Err(BatchError::Unsupported { .. })
    ));
}

/// Shell metacharacters, quotes, newlines, command substitutions: they arrive verbatim and
/// nothing in them runs. The values also go through the agent's own parameter validation.
#[tokio::test]
async fn parameter_corpus_is_verbatim_and_inert() {
    let work = tempfile::tempdir().unwrap();
    let canary = work.path().join("pwned");
    let keep = work.path().join("keep");
    std::fs::write(&keep, "still here").unwrap();
    let c = canary.display().to_string();
    let k = keep.display().to_string();
    let corpus: Vec<String> = vec![
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!(";touch {c}"),
        format!("; rm -rf {k}"),
        format!(";rm -rf {k};"),
        format!("| touch {c}"),
        format!("&& touch {c}"),
        format!("x\ntouch {c}\n"),
        format!("'; touch {c}; '"),
        format!("\"; touch {c}; \""),
        format!("$(rm -rf {k})"),
        "${IFS}$PATH${HOME:?}".into(),
        "*".into(),
        "~root".into(),
        "-rf".into(),
        "--help".into(),
        "\\$(x)\\".into(),
        "a\tb\r\nc".into(),
        " leading and trailing ".into(),
        "émoji ✓ \u{7f}".into(),
        "".into(),
        "%j %x %u".into(),
        format!("> {c}"),
        format!("< /etc/passwd > {c}"),
    ];
    // A job type whose parameters are plain strings (validated by the agent's config).
    let mut cfg = String::from(
        "server_url = \"https://h\"\ntoken_file = \"/t\"\nsite = \"local\"\nwork_dir = \"/w\"\n[[job_types]]\nname = \"echo\"\n",
    );
    let mut script = String::new();
    let mut given = Map::new();
    for (i, v) in corpus.iter().enumerate() {
        cfg.push_str(&format!(
            "[[job_types.parameters]]\nname = \"p{i}\"\ntype = \"string\"\n"
        ));
        script.push_str(&format!("printf '%s' \"$HPCSERA_PARAM_p{i}\" > p{i}.txt\n"));
        given.insert(format!("p{i}"), Value::String(v.clone()));
    }
    cfg.push_str(&format!(
        "[[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\nscript = '''\n{script}'''\n"
    ));
    let cfg = AgentConfig::parse("corpus.toml", &cfg).unwrap();
    let jt = cfg.job_type("echo").unwrap();
    let validated = jt.validate_parameters(&given).unwrap();
    let run = jt.sub_job("run").unwrap().script.clone().unwrap();

    let a = LocalAdapter::new(work.path().join(".local-batch")).unwrap();
    let (req, exit_file) = prepare(work.path(), "corpus", &run, &validated);
    // Nothing of the values is in the rendered script.
    let rendered = std::fs::read_to_string(&req.script_path).unwrap();
    assert!(
        !rendered.contains(&c) && !rendered.contains(&k),
        "{rendered}"
    );
    let job = BatchJobRef::new(a.submit(&req).await.unwrap(), Some(exit_file));
    assert_eq!(
        wait_for(&a, &job, BatchState::is_terminal).await,
        BatchState::Completed { exit_code: 0 }
    );
    for (i, v) in corpus.iter().enumerate() {
        let got = std::fs::read_to_string(req.work_dir.join(format!("p{i}.txt"))).unwrap();
        assert_eq!(&got, v, "parameter p{i}");
    }
    assert!(!canary.exists(), "something in a parameter was executed");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "still here");
    // A NUL byte cannot be passed and is refused before anything runs.
    let ctx = JobContext {
        job_id: "n".into(),
        job_type: "t".into(),
        site: "s".into(),
        job_dir: work.path().join("n"),
    };
    assert!(batch_env(
        &ctx,
        "run",
        &params(json!({"x": "a\u{0}b"})),
        &work.path().join("e")
    )
    .is_err());
}

fn group_alive(pgid: i32) -> bool {
    unsafe { libc::kill(-pgid, 0) == 0 }
}

fn pid_of(state_dir: &Path, id: &str) -> i32 {
    let s = std::fs::read_to_string(state_dir.join(id).join("pid")).unwrap();
    s.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn cancel_kills_the_process_group() {
    let work = tempfile::tempdir().unwrap();
    let state_dir = work.path().join(".local-batch");
    let a = LocalAdapter::new(&state_dir).unwrap();
    let (req, exit_file) = prepare(work.path(), "c1", "sleep 300 &\nsleep 300\n", &Map::new());
    let id = a.submit(&req).await.unwrap();
    let job = BatchJobRef::new(id.clone(), Some(exit_file));
    assert_eq!(
        wait_for(&a, &job, |s| *s != BatchState::Pending).await,
        BatchState::Running
    );
    let pgid = pid_of(&state_dir, &id);
    assert!(group_alive(pgid));
    a.cancel(&id).await.unwrap();
    assert_eq!(
        wait_for(&a, &job, BatchState::is_terminal).await,
        BatchState::Cancelled
    );
    let start = Instant::now();
    while group_alive(pgid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process group {pgid} survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Cancelling again (or a finished job) is fine; an unknown id is not.
    a.cancel(&id).await.unwrap();
    assert!(matches!(
        a.cancel("local-0000").await,
        Err(BatchError::NotFound { .. })
    ));
    assert_eq!(
        a.status_all(&[BatchJobRef::new("local-ffff", None)])
            .await
            .unwrap()["local-ffff"],
        BatchState::Unknown
    );
}

#[tokio::test]
async fn state_survives_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let state_dir = work.path().join(".local-batch");
    let (short, short_exit) = prepare(work.path(), "r1", "sleep 1\nexit 5\n", &Map::new());
    let (long, long_exit) = prepare(work.path(), "r2", "sleep 300\n", &Map::new());
    let (short_id, long_id) = {
        let a = LocalAdapter::new(&state_dir).unwrap();
        (
            a.submit(&short).await.unwrap(),
            a.submit(&long).await.unwrap(),
        )
        // The adapter (the "agent") goes away; the jobs go on.
    };
    let b = LocalAdapter::new(&state_dir).unwrap();
    let short_job = BatchJobRef::new(short_id.clone(), Some(short_exit));
    let long_job = BatchJobRef::new(long_id.clone(), Some(long_exit));
    let st = b
        .status_all(&[short_job.clone(), long_job.clone()])
        .await
        .unwrap();
    assert_eq!(st[&long_id], BatchState::Running);
    let found = b
        .find_by_name(&[
            batch_job_name("r1", "run"),
            batch_job_name("r2", "run"),
            "other".into(),
        ])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&batch_job_name("r1", "run")], short_id);
    let st = wait_for(&b, &short_job, BatchState::is_terminal).await;
    assert_failed_with(&st, 5);
    // A third instance still knows, and can cancel the long one.
    let c = LocalAdapter::new(&state_dir).unwrap();
    let states = c.status_all(std::slice::from_ref(&short_job)).await;
    assert_failed_with(&states.unwrap()[&short_id], 5);
    c.cancel(&long_id).await.unwrap();
    assert_eq!(
        wait_for(&c, &long_job, BatchState::is_terminal).await,
        BatchState::Cancelled
    );
}
