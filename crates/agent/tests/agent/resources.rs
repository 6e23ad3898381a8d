//! Resources through the slurm, pbs and lsf presets: rendered as submit options (argv, as
//! the fake commands log them) and what the batch system granted, read from recorded status
//! outputs (`tests/fixtures/*resources*`) by the one status query.

use crate::adapters::{cat, refs, request, Fake};
use hpcsera_agent::{BatchAdapter, BatchPreset};
use hpcsera_api_types::{GrantedResources, Resources};
use serde_json::json;

fn all_resources() -> Resources {
    serde_json::from_value(json!({
        "node_count": 2, "processes_per_node": 4, "process_count": 8,
        "cpu_cores_per_process": 2, "gpu_cores_per_process": 1, "memory": "8G",
        "duration": "1h30m", "queue_name": "debug", "account": "proj42",
        "reservation_id": "maint"
    }))
    .unwrap()
}

/// The options a preset renders for `resources`: what the fake submit command received
/// between its fixed arguments and the config's `submit_options`.
async fn rendered(preset: BatchPreset, submit: &str, output: &str, resources: Resources) -> String {
    let fake = Fake::new();
    fake.program(submit, &cat(output));
    let a = fake.adapter(preset);
    let work = tempfile::tempdir().unwrap();
    let mut req = request(work.path());
    req.resources = resources;
    a.submit(&req).await.unwrap();
    let call = fake.calls()[0].clone();
    let w = work.path().display().to_string();
    let fixed_end = match preset {
        BatchPreset::Slurm => "[--export=ALL] ".to_string(),
        BatchPreset::Pbs => format!("[-e] [{w}/run.err] "),
        _ => format!("[-cwd] [{w}] "),
    };
    let start = call.find(&fixed_end).unwrap() + fixed_end.len();
    let end = call
        .find("[--account=proj 42] [--time=00:10:00]")
        .expect("submit_options then the sub-job's options, each once");
    assert_eq!(
        call.matches("[--account=proj 42]").count(),
        1,
        "submit_options once: {call}"
    );
    call[start..end].trim_end().to_string()
}

fn res(v: serde_json::Value) -> Resources {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn slurm_renders_every_resource() {
    assert_eq!(
        rendered(BatchPreset::Slurm, "sbatch", "slurm_sbatch.txt", all_resources()).await,
        "[--nodes=2] [--ntasks=8] [--ntasks-per-node=4] [--cpus-per-task=2] [--gpus-per-task=1] \
         [--mem=4096M] [--time=0-01:30:00] [--partition=debug] [--account=proj42] [--reservation=maint]"
    );
    assert_eq!(
        rendered(
            BatchPreset::Slurm,
            "sbatch",
            "slurm_sbatch.txt",
            res(json!({"duration": 59, "memory": 1}))
        )
        .await,
        "[--mem=1M] [--time=0-00:00:59]"
    );
    assert_eq!(
        rendered(
            BatchPreset::Slurm,
            "sbatch",
            "slurm_sbatch.txt",
            Resources::default()
        )
        .await,
        ""
    );
}

#[tokio::test]
async fn pbs_renders_a_select_statement_and_walltime() {
    assert_eq!(
        rendered(BatchPreset::Pbs, "qsub", "pbs_qsub.txt", all_resources()).await,
        "[-l] [select=2:ncpus=8:mpiprocs=4:mem=4096mb:ngpus=4] [-l] [walltime=1:30:00] \
         [-q] [debug] [-A] [proj42] [-q] [maint]"
    );
    for (given, want) in [
        (
            json!({"process_count": 4}),
            "[-l] [select=4:ncpus=1:mpiprocs=1]",
        ),
        (
            json!({"node_count": 3}),
            "[-l] [select=3:ncpus=1:mpiprocs=1]",
        ),
        (
            json!({"node_count": 2, "process_count": 8, "memory": "3G"}),
            "[-l] [select=2:ncpus=4:mpiprocs=4:mem=1536mb]",
        ),
        (
            json!({"cpu_cores_per_process": 6}),
            "[-l] [select=1:ncpus=6]",
        ),
        (json!({"duration": "2d"}), "[-l] [walltime=48:00:00]"),
    ] {
        assert_eq!(
            rendered(BatchPreset::Pbs, "qsub", "pbs_qsub.txt", res(given.clone())).await,
            want,
            "{given}"
        );
    }
}

#[tokio::test]
async fn lsf_renders_slots_span_and_minutes() {
    assert_eq!(
        rendered(BatchPreset::Lsf, "bsub", "lsf_bsub.txt", all_resources()).await,
        "[-n] [8] [-R] [span[ptile=4]] [-gpu] [num=4] [-R] [affinity[core(2)]] \
         [-R] [rusage[mem=4096MB]] [-W] [90] [-q] [debug] [-P] [proj42] [-U] [maint]"
    );
    for (given, want) in [
        (json!({"process_count": 4}), "[-n] [4]"),
        (json!({"node_count": 3}), "[-n] [3] [-R] [span[ptile=1]]"),
        (json!({"duration": 61}), "[-W] [2]"),
    ] {
        assert_eq!(
            rendered(BatchPreset::Lsf, "bsub", "lsf_bsub.txt", res(given.clone())).await,
            want,
            "{given}"
        );
    }
}

fn granted(v: serde_json::Value) -> GrantedResources {
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn slurm_grants_come_from_the_one_squeue() {
    let fake = Fake::new();
    fake.program("squeue", &cat("slurm_squeue_resources.txt"));
    fake.program("sacct", "exit 1");
    let a = fake.adapter(BatchPreset::Slurm);
    let before = a.commands_spawned();
    a.status_all(&refs(&["9101", "9102", "9103", "9104"]))
        .await
        .unwrap();
    assert_eq!(a.commands_spawned() - before, 1, "one query for all");
    assert_eq!(
        a.granted("9101"),
        Some(granted(
            json!({"node_count": 2, "cpu_count": 16, "duration": 3600,
                            "queue_name": "debug", "account": "proj42", "memory": 4u64 << 30})
        ))
    );
    assert_eq!(
        a.granted("9102"),
        Some(granted(
            json!({"node_count": 4, "cpu_count": 64, "duration": 86400,
                            "queue_name": "long", "account": "proj42",
                            "reservation_id": "maint_r1", "memory": 2000u64 << 20})
        ))
    );
    assert_eq!(
        a.granted("9104"),
        Some(granted(
            json!({"node_count": 1, "cpu_count": 1, "queue_name": "debug"})
        ))
    );
    assert_eq!(a.granted("5"), None);
}

#[tokio::test]
async fn pbs_grants_come_from_qstat_json() {
    let fake = Fake::new();
    fake.program("qstat", &cat("pbs_qstat_f_json_resources.json"));
    let a = fake.adapter(BatchPreset::Pbs);
    a.status_all(&refs(&["2234.pbs01", "2235.pbs01"]))
        .await
        .unwrap();
    assert_eq!(
        a.granted("2234.pbs01"),
        Some(granted(
            json!({"node_count": 2, "process_count": 8, "cpu_count": 16,
                            "gpu_count": 8, "memory": 8u64 << 30, "duration": 5400,
                            "queue_name": "debug", "account": "proj42"})
        ))
    );
    assert_eq!(
        a.granted("2235.pbs01"),
        Some(granted(
            json!({"node_count": 1, "cpu_count": 1, "duration": 360000,
                            "queue_name": "workq"})
        ))
    );
}

#[tokio::test]
async fn lsf_grants_come_from_bjobs_json() {
    let fake = Fake::new();
    fake.program(
        "bjobs",
        &format!("{}; exit 255", cat("lsf_bjobs_resources.json")),
    );
    let a = fake.adapter(BatchPreset::Lsf);
    a.status_all(&refs(&["4811", "4812", "9999"]))
        .await
        .unwrap();
    assert_eq!(
        a.granted("4811"),
        Some(granted(
            json!({"node_count": 2, "cpu_count": 16, "duration": 3600,
                            "queue_name": "normal", "account": "proj42"})
        ))
    );
    assert_eq!(
        a.granted("4812"),
        Some(granted(
            json!({"duration": 5400, "queue_name": "short", "account": "default",
                            "reservation_id": "alice#2"})
        ))
    );
    assert_eq!(a.granted("9999"), None);
}
