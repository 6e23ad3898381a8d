//! Tests of the manifest builder: a sample manifest of a failed job with code, results,
//! sub-jobs, reports and a container, and what it must say.

use super::*;
use crate::config::AgentConfig;
use crate::provenance::build;
use hpcsera_api_types::provenance::{DigestRole, ManifestFacts};
use hpcsera_api_types::CodeStatus;

const CONFIG: &str = r#"
server_url = "http://hpc.example.org"
token_file = "/t"
site = "s1"
work_dir = "/w"
[[job_types]]
name = "sim"
description = "a simulation"
[[job_types.parameters]]
name = "src"
type = "code"
[[job_types.parameters]]
name = "n"
type = "integer"
[job_types.provenance]
container = { image = "docker://ghcr.io/org/app:1.2", digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000" }
[[job_types.sub_jobs]]
name = "stage"
kind = "login"
command = ["true"]
[[job_types.sub_jobs]]
name = "run"
kind = "batch"
script = "echo hi"
"#;

fn probe(text: &str) -> Probe {
    Probe {
        argv: vec!["scontrol".into(), "show".into(), "job".into(), "7".into()],
        output: text.into(),
        truncated: false,
        exit_code: Some(0),
        error: None,
    }
}

/// The manifest of a failed job with code, results, sub-jobs and reports.
/// The approved code bundle `sha` uploaded by bob, approved by alice.
fn bundle(sha: &str) -> CodeFacts {
    CodeFacts {
        param: "src".into(),
        bundle: CodeBundle {
            id: sha.into(),
            project: "p".into(),
            size: 1234,
            status: CodeStatus::Approved,
            uploaded_by: "bob".into(),
            created_at: "2024-01-01T00:00:00Z".into(),
            hpc_sha256: Some(sha.into()),
            hpc_reported_at: None,
            digests_match: true,
            decided_by: Some("alice".into()),
            decided_at: Some("2024-01-01T00:01:00Z".into()),
            reason: None,
            approval: Some(hpcsera_api_types::SignedApproval {
                message: "hpcsera-code-approval v1\n".into(),
                signature: "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"
                    .into(),
                key_fingerprint: Some("SHA256:abc".into()),
            }),
        },
    }
}

fn sample() -> Vec<u8> {
    sample_with(serde_json::json!({}))
}

/// The sample manifest of a job with `extra` fields (e.g. a sweep member's).
fn sample_with(extra: serde_json::Value) -> Vec<u8> {
    let cfg = AgentConfig::parse("t.toml", CONFIG).unwrap();
    let sha = "ab".repeat(32);
    let mut job = serde_json::json!({
        "id": "0190c0de-0000-7000-8000-000000000001", "project": "p", "site": "s1",
        "jobType": "sim", "owner": "alice", "status": "running", "parameters": {},
        "held": false, "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z",
    });
    if let (Some(j), Some(e)) = (job.as_object_mut(), extra.as_object()) {
        j.extend(e.clone());
    }
    let job: Job = serde_json::from_value(job).unwrap();
    let params = serde_json::json!({"src": sha, "n": 3})
        .as_object()
        .cloned()
        .unwrap();
    let resources: hpcsera_api_types::Resources =
        serde_json::from_value(serde_json::json!({"node_count": 2, "duration": 600})).unwrap();
    let states: Vec<SubJobState> = serde_json::from_value(serde_json::json!([
        {"name": "stage", "status": "completed", "exitCode": 0},
        {"name": "run", "status": "failed", "batchJobId": "7", "exitCode": 3,
         "message": "exited with code 3"}
    ]))
    .unwrap();
    let f = RunFacts {
        job: &job,
        job_type: &cfg.job_types[0],
        params: &params,
        resources: &resources,
        server_url: "http://hpc.example.org/",
        agent: AgentFacts {
            version: "0.1.0".into(),
            host: "login1".into(),
            batch_system: "slurm".into(),
            batch_version: Some(probe("slurm 23.02.7\n")),
        },
        end: EndFacts {
            status: JobStatus::Failed,
            exit_code: Some(3),
            message: "sub-job run failed".into(),
            started_ms: 1_700_000_000_000,
            ended_ms: 1_700_000_060_123,
        },
        sub_jobs: states
            .iter()
            .zip([SubJobKind::Login, SubJobKind::Batch])
            .map(|(s, k)| SubRun {
                state: s,
                kind: k,
                started_ms: Some(1_700_000_000_500),
                ended_ms: Some(1_700_000_050_000),
                report: (k == SubJobKind::Batch).then(|| probe("JobId=7 JobState=FAILED")),
                modules: None,
            })
            .collect(),
        code: vec![bundle(&sha)],
        results: vec![ResultFile {
            name: "out/sum.txt".into(),
            size: 5,
            sha256: "cd".repeat(32),
            created_at: "2024-01-01T00:02:00Z".into(),
        }],
        container: cfg.job_types[0]
            .provenance
            .container
            .as_ref()
            .map(|c| ContainerFacts {
                image: c.image.clone(),
                digest: c.digest.clone(),
            }),
        commands: vec![("uname".into(), probe("Linux 6.1"))],
    };
    build(&f)
}

#[test]
fn the_manifest_names_the_job_its_files_and_its_actions() {
    let bytes = sample();
    let facts = ManifestFacts::parse(&bytes).unwrap();
    assert_eq!(facts.job_id, "0190c0de-0000-7000-8000-000000000001");
    assert_eq!(
        facts.end_time.as_deref(),
        Some("2023-11-14T22:14:20.123+00:00")
    );
    let roles: Vec<_> = facts
        .digests
        .iter()
        .map(|d| (d.role, d.name.as_str()))
        .collect();
    let code = format!("#code-{}", "ab".repeat(32));
    assert_eq!(
        roles,
        vec![
            (DigestRole::Result, "results/out/sum.txt"),
            (DigestRole::Code, code.as_str())
        ]
    );
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let graph = doc["@graph"].as_array().unwrap();
    let by_id = |id: &str| graph.iter().find(|e| e["@id"] == id).cloned().unwrap();
    assert_eq!(by_id("ro-crate-metadata.json")["about"]["@id"], "./");
    assert_eq!(by_id("./")["conformsTo"]["@id"], PROFILE);
    let run = by_id("#subjob-run");
    assert_eq!(run["actionStatus"], "http://schema.org/FailedActionStatus");
    assert_eq!(run["startTime"], "2023-11-14T22:13:20.500+00:00");
    assert_eq!(by_id("#outcome-run")["value"], 3);
    assert_eq!(by_id("#batchjob-run")["value"], "7");
    assert_eq!(by_id("#resource-node_count")["value"], 2);
    assert_eq!(by_id("#resource-duration")["propertyID"], "resource");
    let object = by_id("urn:uuid:0190c0de-0000-7000-8000-000000000001")["object"].to_string();
    assert!(object.contains("#resource-duration"), "{object}");
    assert_eq!(by_id("#container")["registry"], "ghcr.io");
    assert_eq!(by_id("#container")["tag"], "1.2");
    let approval = format!("#approval-{}", "ab".repeat(32));
    assert_eq!(by_id(&approval)["agent"]["@id"], "#user-alice");
    // A signed approval carries its message, signature and key, checkable with ssh-keygen.
    assert_eq!(
        by_id(&approval)["additionalProperty"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert!(by_id(&format!("{approval}-signature"))["value"]
        .as_str()
        .is_some_and(|s| s.starts_with("-----BEGIN SSH SIGNATURE-----")));
    assert_eq!(by_id(&format!("{approval}-key"))["value"], "SHA256:abc");
    let jt = by_id("http://hpc.example.org/api/v1/sites/s1/jobTypes#sim");
    assert_eq!(
        jt["softwareVersion"],
        format!(
            "sha256:{}",
            AgentConfig::parse("t.toml", CONFIG).unwrap().job_types[0].definition_digest()
        )
    );
    // Each person once.
    assert_eq!(
        graph.iter().filter(|e| e["@id"] == "#user-alice").count(),
        1
    );
}

#[test]
fn a_sweep_members_manifest_names_its_sweep_and_index() {
    let sweep = "0190c0de-0000-7000-8000-0000000000aa";
    let bytes = sample_with(serde_json::json!({"sweep": sweep, "sweepIndex": 17}));
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let graph = doc["@graph"].as_array().unwrap();
    let entity = |at: &str| graph.iter().find(|e| e["@id"] == at).cloned().unwrap();
    assert_eq!(entity("#sweep")["name"], "hpcsera sweep");
    assert_eq!(entity("#sweep")["value"], sweep);
    assert_eq!(entity("#sweep-index")["value"], 17);
    let action = graph
        .iter()
        .find(|e| e["@id"] == "urn:uuid:0190c0de-0000-7000-8000-000000000001")
        .unwrap();
    let props = action["additionalProperty"].to_string();
    assert!(
        props.contains("#sweep") && props.contains("#sweep-index"),
        "{props}"
    );
    // A job that is no sweep's member says nothing of sweeps.
    let plain: serde_json::Value = serde_json::from_slice(&sample()).unwrap();
    assert!(!plain.to_string().contains("hpcsera sweep"));
}
