//! Resources end to end: `hpcsera job submit --resources`, the server's rules, the real
//! agent rendering them for the batch system, and on Slurm (`HPCSERA_TEST_ADAPTER=slurm`)
//! `scontrol show job` showing them and the job's `grantedResources` from the agent's one
//! status query. On the local adapter the resources are accepted and shown, not enforced.

use crate::common::{slurm, Env};
use hpcsera_api_types::JobStatus;
use serde_json::json;

const SITE: &str = "res";

/// `scontrol show job ID` as `Key=Value` pairs.
fn scontrol(id: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new("scontrol")
        .args(["show", "job", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field(pairs: &[(String, String)], key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in {pairs:?}"))
}

#[tokio::test]
async fn a_job_with_resources_gets_them_from_the_batch_system() {
    let env = Env::new(
        SITE,
        include_str!("../../fixtures/job_types/resources.toml"),
    )
    .await;
    // Out of bounds: the server's 422 names the field; the CLI exits 2.
    let (ok, _, err) = env
        .hpcsera(&[
            "job",
            "submit",
            SITE,
            "sized",
            "--resources",
            "node_count=2",
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains("resources.node_count") && err.contains("maximum is 1"),
        "{err}"
    );
    let (ok, out, err) = env
        .hpcsera(&[
            "job",
            "submit",
            SITE,
            "sized",
            "--resources",
            "process_count=2,duration=20m",
            "--resources",
            "memory=512M",
        ])
        .await;
    assert!(ok, "{err}");
    let id = out.trim().to_string();
    let job = env.wait_for(&id, JobStatus::is_terminal, "terminal").await;
    env.assert_completed(&job);
    assert_eq!(
        serde_json::to_value(&job.resources).unwrap(),
        json!({"node_count": 1, "process_count": 2, "memory": 512u64 << 20,
               "duration": 1200, "queue_name": "debug"})
    );
    let (ok, shown, _) = env.hpcsera(&["job", "get", &id]).await;
    assert!(ok);
    assert!(
        shown.contains("node_count=1 process_count=2 memory=512M duration=20m queue_name=debug"),
        "{shown}"
    );
    if !slurm() {
        return;
    }
    let run = job.sub_jobs[0].batch_job_id.clone().expect("a batch id");
    let post = job.sub_jobs[1].batch_job_id.clone().expect("a batch id");
    let s = scontrol(&run);
    assert_eq!(field(&s, "TimeLimit"), "00:20:00");
    assert_eq!(field(&s, "NumNodes"), "1");
    assert_eq!(field(&s, "NumTasks"), "2");
    assert_eq!(field(&s, "Partition"), "debug");
    assert_eq!(field(&s, "MinMemoryNode"), "512M");
    let p = scontrol(&post);
    assert_eq!(field(&p, "TimeLimit"), "00:02:00");
    assert_eq!(field(&p, "NumTasks"), "1");
    // What the agent's status query saw, per sub-job and for the job's latest batch job.
    let granted = job.sub_jobs[0]
        .granted_resources
        .clone()
        .expect("granted for run");
    assert_eq!(
        serde_json::to_value(&granted).unwrap(),
        json!({"node_count": 1, "cpu_count": 2, "duration": 1200, "queue_name": "debug",
               "memory": 512u64 << 20})
    );
    let last = job.granted_resources.clone().expect("granted for the job");
    assert_eq!(last.duration, Some(120), "the post step's: {last:?}");
    assert!(
        shown.contains("granted") && shown.contains("duration=2m"),
        "{shown}"
    );
}
