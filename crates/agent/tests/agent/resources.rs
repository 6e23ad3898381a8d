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

// ---- Through the agent ------------------------------------------------------------------

mod runtime {
    use hpcsera_agent::{Agent, AgentConfig};
    use hpcsera_api_types::{JobStatus, NewJob};
    use hpcsera_client::Client;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn script(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fake Slurm whose squeue answers every id with the state in `<dir>/state` and what
    /// the fixture's first line says was granted.
    fn fake_slurm(d: &str) {
        script(
            &Path::new(d).join("sbatch"),
            &format!("#!/bin/sh\nn=$(cat {d}/counter 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {d}/counter\necho \"$*\" >> {d}/sbatch.log\necho $n\n"),
        );
        script(
            &Path::new(d).join("squeue"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> {d}/squeue.log\nst=$(cat {d}/state)\nfor a in \"$@\"; do case \"$a\" in --jobs=*) ids=\"${{a#--jobs=}}\";; esac; done\n\
                 echo \"$ids\" | tr ',' '\\n' | while read -r id; do [ -n \"$id\" ] && echo \"$id|$st|None|2|4|1:00:00|debug|(null)|(null)|1G\"; done\nexit 0\n"
            ),
        );
        std::fs::write(Path::new(d).join("state"), "RUNNING").unwrap();
    }

    fn config(d: &str, url: &str) -> String {
        let rest = format!(
            r#"[batch]
preset = "slurm"
submit = ["{d}/sbatch", "--parsable", "--job-name={{job_name}}", "{{options}}", "{{script}}"]
status = ["{d}/squeue", "--noheader", "--format=%i|%T|%r|%D|%C|%l|%P|%a|%v|%m", "--jobs={{ids}}"]
accounting = []
submit_options = ["--qos=normal"]
[[job_types]]
name = "mpi"
[job_types.resources]
node_count = {{ maximum = 4, default = 1 }}
duration = {{ maximum = "2h", default = "10m" }}
queue_name = {{ fixed = "debug" }}
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "true"
options = ["--constraint=x"]
[[job_types.sub_jobs]]
name = "post"
kind = "batch"
script = "true"
resources = {{ node_count = 1, duration = "5m" }}
"#
        );
        crate::common::fake_site_config(d, url, &rest)
    }

    #[tokio::test]
    async fn resources_reach_sbatch_once_each_and_grants_reach_the_job() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        fake_slurm(&d);
        let (url, agent_token, client_token) = crate::common::fake_site_server(dir.path()).await;
        let cfg_path = dir.path().join("agent.toml");
        std::fs::write(&cfg_path, config(&d, &url)).unwrap();
        let client = Client::new(&url, &client_token).unwrap();
        let mut agent = Agent::new(AgentConfig::load(&cfg_path).unwrap(), &agent_token).unwrap();
        agent.start().await.unwrap();

        let job = NewJob {
            site: "fake".into(),
            job_type: "mpi".into(),
            parameters: Default::default(),
            resources: json!({"node_count": 2, "duration": "1h"})
                .as_object()
                .cloned()
                .unwrap(),
            metadata: None,
            callback_url: None,
        };
        let id = client.submit(&job, None).await.unwrap().id;
        agent.cycle(0, false).await.unwrap();
        let log = || std::fs::read_to_string(dir.path().join("sbatch.log")).unwrap();
        let first = log().lines().next().unwrap().to_string();
        let opts = first
            .split_once(" --job-name=")
            .unwrap()
            .1
            .split_once(' ')
            .unwrap()
            .1;
        assert_eq!(
            opts.rsplit_once(' ').unwrap().0,
            "--nodes=2 --time=0-01:00:00 --partition=debug --qos=normal --constraint=x",
            "resources, then [batch] submit_options once, then the sub-job's options"
        );
        // The next cycle's one squeue shows the job running and what it was granted.
        agent.cycle(0, false).await.unwrap();
        let j = client.get_job(&id).await.unwrap();
        assert_eq!(j.status, JobStatus::Running);
        let want = json!({"node_count": 2, "cpu_count": 4, "duration": 3600,
                          "queue_name": "debug", "memory": 1u64 << 30});
        assert_eq!(serde_json::to_value(&j.granted_resources).unwrap(), want);
        assert_eq!(
            serde_json::to_value(&j.sub_jobs[0].granted_resources).unwrap(),
            want
        );
        // The second sub-job fixes its own layout and time; the queue stays the job's.
        std::fs::write(dir.path().join("state"), "COMPLETED").unwrap();
        agent.cycle(0, false).await.unwrap();
        agent.cycle(0, false).await.unwrap();
        let second = log().lines().nth(1).unwrap().to_string();
        assert!(
            second.contains(" --nodes=1 --time=0-00:05:00 --partition=debug --qos=normal "),
            "{second}"
        );
        assert_eq!(second.matches("--qos=normal").count(), 1, "{second}");
    }
}
