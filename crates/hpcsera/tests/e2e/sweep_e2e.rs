//! Sweeps end to end: the CLI submits a grid, the real agent runs the members — as job
//! arrays on Slurm (`HPCSERA_TEST_ADAPTER=slurm`; the `sbatch` calls are counted by a wrapper
//! in the agent's `[batch] submit`), one by one on the local adapter — each member with its
//! own output and result file; one cancelled member stops only its task; the counts, the
//! CLI's exit code and `sweep results` are right. And a kill -9 of the agent in the middle
//! of an array's submit submits nothing twice.

use crate::common::{bin, slurm, Env, Opts};
use hpcsera_api_types::{JobStatus, Operation, OutputStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SITE: &str = "sweepsite";

/// `member`: prints its `n`, writes it to `results/n.txt`; member 7 sleeps (to be cancelled),
/// member 13 fails with 3.
const JOB_TYPES: &str = r#"
[[job_types]]
name = "member"
description = "one member of a sweep"
[[job_types.parameters]]
name = "n"
type = "integer"
[[job_types.parameters]]
name = "hold_at"
type = "integer"
default = 7
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = """
#!/bin/sh
echo "member $HPCSERA_PARAM_n"
mkdir -p results
echo "$HPCSERA_PARAM_n" > results/n.txt
if [ "$HPCSERA_PARAM_n" = "$HPCSERA_PARAM_hold_at" ]; then sleep 300; fi
if [ "$HPCSERA_PARAM_n" = 13 ]; then exit 3; fi
exit 0
"""
"#;

/// A `sbatch` that counts its calls in `<dir>/sbatch.calls` (sleeping `delay` seconds
/// after the log line and before the real submit), as the agent's `[batch] submit`.
fn counting_sbatch(dir: &Path, delay: u32) -> (PathBuf, String) {
    let wrapper = dir.join("sbatch-count");
    let calls = dir.join("sbatch.calls");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho called >> '{}'\nsleep {delay}\nexec /usr/bin/sbatch \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let batch = format!(
        "submit = [{:?}, \"--parsable\", \"--job-name={{job_name}}\", \"--output={{stdout}}\", \
         \"--error={{stderr}}\", \"--chdir={{work_dir}}\", \"--export=ALL\", \"{{options}}\", \"{{script}}\"]\n\
         array_size = 100\narray_throttle = 64",
        wrapper.display().to_string()
    );
    (calls, batch)
}

fn count_calls(calls: &Path) -> usize {
    std::fs::read_to_string(calls)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn env_with(batch_extra: String, max_active_jobs: usize) -> Env {
    Env::with_opts(
        SITE,
        JOB_TYPES,
        Opts {
            max_active_jobs,
            batch_extra,
            ..Opts::default()
        },
    )
    .await
}

/// Runs the CLI; (exit code, stdout, stderr).
async fn cli(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn member_id(env: &Env, sweep: &str, index: u32) -> String {
    let jobs = env.client.all_sweep_jobs(sweep).await.unwrap();
    jobs.iter()
        .find(|j| j.sweep_index == Some(index))
        .map(|j| j.id.clone())
        .expect("member")
}

#[tokio::test]
async fn a_sweep_runs_as_arrays_with_own_output_and_one_cancelled_task() {
    let members: u32 = if slurm() { 200 } else { 16 };
    let dir = tempfile::tempdir().unwrap();
    let (calls, batch) = counting_sbatch(dir.path(), 0);
    let env = env_with(if slurm() { batch } else { String::new() }, 250).await;
    let grid = format!(
        "n={}",
        (0..members)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let (code, out, err) = cli(
        &env,
        &[
            "sweep", "submit", SITE, "member", "--grid", &grid, "--output", "json",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let sweep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = sweep["id"].as_str().unwrap().to_string();
    assert_eq!(sweep["members"], members);
    // Member 7 runs (and sleeps): cancel it alone.
    let seventh = member_id(&env, &id, 7).await;
    env.wait_for_within(
        &seventh,
        |s| s == JobStatus::Running,
        "running",
        Duration::from_secs(300),
    )
    .await;
    env.client
        .operation(&seventh, Operation::Cancel)
        .await
        .unwrap();
    let (code, _, err) = cli(&env, &["sweep", "wait", &id, "--timeout", "15m"]).await;
    assert_eq!(
        code,
        Some(70),
        "one failed and one cancelled member: {err}\n{}",
        env.agent_log()
    );
    assert!(err.contains("done"), "the progress line: {err}");
    let s = env.client.get_sweep(&id).await.unwrap();
    assert_eq!(
        s.counts.get(JobStatus::Completed),
        u64::from(members) - 2,
        "{s:?}"
    );
    assert_eq!(s.counts.get(JobStatus::Failed), 1);
    assert_eq!(s.counts.get(JobStatus::Cancelled), 1);
    let jobs = env.client.all_sweep_jobs(&id).await.unwrap();
    assert_eq!(jobs.len(), members as usize);
    for j in &jobs {
        let n = j.sweep_index.unwrap();
        let want = match n {
            7 => JobStatus::Cancelled,
            13 => JobStatus::Failed,
            _ => JobStatus::Completed,
        };
        assert_eq!(j.status, want, "member {n}: {:?}", j.message);
        if n == 13 {
            assert_eq!(j.exit_code, Some(3));
        }
        let o = env
            .client
            .read_output(&j.id, OutputStream::Stdout, 0, 4096)
            .await
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.data),
            format!("member {n}\n"),
            "member {n}"
        );
        if slurm() {
            let b = j.batch_job_id.as_deref().unwrap_or_default();
            assert!(b.contains('_'), "member {n} ran as an array task: {b}");
        }
    }
    if slurm() {
        let n = count_calls(&calls);
        let chunks = (members as usize).div_ceil(100);
        assert!(
            (1..=chunks).contains(&n),
            "{n} sbatch calls for {chunks} chunks"
        );
    }
    // Every member's result file, one directory per index.
    let to = dir.path().join("results");
    let (code, _, err) = cli(&env, &["sweep", "results", &id, "-o", to.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{err}");
    for n in 0..members {
        let text = std::fs::read_to_string(to.join(n.to_string()).join("n.txt"))
            .unwrap_or_else(|e| panic!("member {n}'s result: {e}"));
        assert_eq!(text.trim(), n.to_string());
    }
}

#[tokio::test]
async fn an_agent_killed_during_an_arrays_submit_submits_nothing_twice() {
    if !slurm() {
        return; // arrays are a batch system's
    }
    let dir = tempfile::tempdir().unwrap();
    // The wrapper logs, waits 3 s, then submits: the agent is killed in between.
    let (calls, batch) = counting_sbatch(dir.path(), 3);
    let mut env = env_with(batch, 50).await;
    let body = hpcsera_api_types::NewSweep {
        site: SITE.into(),
        job_type: "member".into(),
        parameters: serde_json::json!({"hold_at": -1})
            .as_object()
            .cloned()
            .unwrap(),
        resources: Default::default(),
        parameter_sets: None,
        grid: Some(
            [(
                "n".to_string(),
                (20..30).map(serde_json::Value::from).collect(),
            )]
            .into(),
        ),
        metadata: None,
        callback_url: None,
    };
    let sweep = env.client.submit_sweep(&body, None).await.unwrap();
    let started = Instant::now();
    while count_calls(&calls) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            env.agent_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.kill_agent().await;
    // The wrapper (its own process group) goes on and submits; the agent comes back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.start_agent();
    let (code, _, err) = cli(&env, &["sweep", "wait", &sweep.id, "--timeout", "5m"]).await;
    assert_eq!(code, Some(0), "{err}\n{}", env.agent_log());
    assert_eq!(
        count_calls(&calls),
        1,
        "one sbatch, never a second: {}",
        env.agent_log()
    );
    for j in env.client.all_sweep_jobs(&sweep.id).await.unwrap() {
        let submitted = env
            .client
            .events(&j.id, 0)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.to_status == Some(JobStatus::Submitted))
            .count();
        assert_eq!(submitted, 1, "member {:?}", j.sweep_index);
    }
}
