//! Signed provenance end to end, with the real agent binary (local adapter, or the real Slurm
//! with `HPCSERA_TEST_ADAPTER=slurm`): every job that ends — with code, failed, cancelled —
//! has a manifest that the community's tools accept (roc-validator against the Process Run
//! Crate profile and RO-Crate 1.1, rocrate reads it back; `provenance_check.py`), that
//! `hpcsera provenance verify` accepts with the agent's key and refuses after one changed
//! byte or a signature by another key, and whose result files are found by their SHA-256.

use crate::common::{self, slurm};
use ed25519_dalek::Signer;
use hpcsera_api_types::provenance::{encode_signature, SignatureFile};
use hpcsera_api_types::JobStatus;
use serde_json::{json, Value};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SITE: &str = "e2e-prov";
const JOB_TYPES: &str = include_str!("../../fixtures/job_types/provenance.toml");

async fn wait_end(env: &common::Env, id: &str) -> hpcsera_api_types::Job {
    env.wait_for_within(
        id,
        JobStatus::is_terminal,
        "terminal",
        Duration::from_secs(180),
    )
    .await
}

/// `hpcsera provenance download` and an unpacked copy of the crate.
async fn crate_dir(env: &common::Env, id: &str) -> PathBuf {
    let zip = env.path().join(format!("{id}.zip"));
    let (ok, _, err) = env
        .hpcsera(&["provenance", "download", id, "-o", zip.to_str().unwrap()])
        .await;
    assert!(ok, "provenance download: {err}");
    let dir = env.path().join(format!("crate-{id}"));
    run(std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(&dir));
    dir
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// roc-validator and rocrate on an unpacked crate (see `provenance_check.py`): no issue at
/// REQUIRED or RECOMMENDED severity, for the crate and for the manifest alone, and rocrate
/// reads back exactly the manifest's entities.
fn check_with_python_tools(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/provenance_check.py");
    let out: Value = serde_json::from_str(&run(std::process::Command::new("python3")
        .arg(script)
        .arg(dir)))
    .unwrap();
    let text = std::fs::read_to_string(dir.join("ro-crate-metadata.json")).unwrap();
    for level in ["required", "recommended", "metadata_only"] {
        assert_eq!(
            out[level]["issues"],
            json!([]),
            "{level} issues of {}:\n{text}",
            dir.display()
        );
        assert_eq!(out[level]["passed"], true, "{level}");
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    let mut want: Vec<(String, Value)> = manifest["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["@id"].as_str().unwrap().to_string(), e["@type"].clone()))
        .collect();
    let mut got: Vec<(String, Value)> = out["entities"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want, "rocrate reads back the same entities");
}

/// `hpcsera provenance verify ID --agent-key KEY [--crate DIR]`: its exit code and output.
async fn verify(env: &common::Env, id: &str, key: &str, dir: Option<&Path>) -> (i32, String) {
    let mut args = vec!["provenance", "verify", id, "--agent-key", key];
    if let Some(d) = dir {
        args.extend(["--crate", d.to_str().unwrap()]);
    }
    let out = tokio::process::Command::new(common::bin())
        .args(&args)
        .env("HPCSERA_URL", &env.url)
        .env("HPCSERA_TOKEN", &env.token)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A copy of an unpacked crate.
fn copy_crate(from: &Path, to: &Path) {
    run(std::process::Command::new("cp").arg("-r").arg(from).arg(to));
}

fn graph_entity(dir: &Path, id: &str) -> Value {
    let m: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ro-crate-metadata.json")).unwrap())
            .unwrap();
    m["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["@id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no entity {id}"))
}

/// Checks what the completed job's manifest says about its code, modules, container and
/// batch system.
fn check_completed_manifest(dir: &Path, job_type_digest: &str, code: &str) {
    let run = graph_entity(dir, "#subjob-run");
    assert_eq!(
        run["actionStatus"],
        "http://schema.org/CompletedActionStatus"
    );
    let modules = graph_entity(dir, "#module-list-run");
    assert!(
        modules["value"].as_str().unwrap().contains("gcc/13.2.0"),
        "{modules}"
    );
    assert_eq!(graph_entity(dir, "#container")["registry"], "docker.io");
    assert!(graph_entity(dir, "#command-kernel")["value"]
        .as_str()
        .unwrap()
        .starts_with("Linux"));
    assert_eq!(graph_entity(dir, &format!("#code-{code}"))["sha256"], code);
    assert_eq!(
        graph_entity(dir, &format!("#approval-{code}"))["agent"]["@id"],
        "#user-alice"
    );
    let jt = graph_entity(dir, "./")["mentions"].clone();
    assert!(
        jt.as_array().unwrap().len() >= 3,
        "job, sub-jobs, approval: {jt}"
    );
    let sw: Vec<Value> = serde_json::from_slice::<Value>(
        &std::fs::read(dir.join("ro-crate-metadata.json")).unwrap(),
    )
    .unwrap()["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "prov")
        .cloned()
        .collect();
    assert_eq!(
        sw[0]["softwareVersion"],
        format!("sha256:{job_type_digest}")
    );
    if slurm() {
        let report = graph_entity(dir, "#batch-report-run");
        assert!(
            report["value"].as_str().unwrap().contains("JobId="),
            "{report}"
        );
        assert!(graph_entity(dir, "#batch-version")["value"]
            .as_str()
            .unwrap()
            .starts_with("slurm"));
    }
}

/// The agent's key as `hpcsera agent --show-key` prints it, and the job type's definition
/// digest as `hpcsera agent --check` prints it.
async fn agent_key_and_digest(env: &common::Env) -> (String, String) {
    let config = env.config_path().to_str().unwrap().to_string();
    let (ok, key, err) = env
        .hpcsera(&["agent", "--config", &config, "--show-key"])
        .await;
    assert!(ok, "{err}");
    let (ok, check, err) = env
        .hpcsera(&["agent", "--config", &config, "--check"])
        .await;
    assert!(ok, "{err}");
    let digest = check
        .lines()
        .find_map(|l| l.strip_prefix("job type prov: definition sha256:"))
        .expect("--check prints the digest")
        .to_string();
    (key.trim().to_string(), digest)
}

#[tokio::test]
async fn every_ended_job_has_a_signed_crate_that_validates_verifies_and_is_found() {
    let env = common::Env::new(SITE, JOB_TYPES).await;
    let (key, digest) = agent_key_and_digest(&env).await;
    let sites = env.client.sites().await.unwrap();
    assert_eq!(
        sites[0].agent_key.as_deref(),
        Some(key.as_str()),
        "published with the job types"
    );
    let src = env.path().join("src");
    common::code_tree(&src, "data");
    let code = env.push(&src).await;
    let completed = env
        .submit_job("prov", json!({"src": code, "n": 4}))
        .await
        .id;
    let failed = env
        .submit_job("prov", json!({"src": code, "code": 3}))
        .await
        .id;
    env.wait_hpc_digest(&code).await;
    let (ok, out) = env.decide("approve", &code, "alice", "reviewed").await;
    assert!(ok, "{out}");
    let napping = env.submit_job("nap", json!({"seconds": 120})).await.id;
    env.wait_for(&napping, |s| s == JobStatus::Running, "running")
        .await;
    env.client
        .operation(&napping, hpcsera_api_types::Operation::Cancel)
        .await
        .unwrap();
    for (id, status) in [
        (&completed, JobStatus::Completed),
        (&failed, JobStatus::Failed),
        (&napping, JobStatus::Cancelled),
    ] {
        let job = wait_end(&env, id).await;
        assert_eq!(job.status, status, "{id}: {}", env.agent_log());
        let dir = crate_dir(&env, id).await;
        check_with_python_tools(&dir);
        assert_eq!(verify(&env, id, &key, None).await.0, 0, "verify {id}");
        let (code_ok, text) = verify(&env, id, &key, Some(&dir)).await;
        assert_eq!(code_ok, 0, "{text}");
        assert_eq!(graph_entity(&dir, "#status")["value"], status.as_str());
        let last = job.sub_jobs.last().unwrap();
        let want = match status {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            _ => "cancelled",
        };
        assert_eq!(
            last.status.as_str(),
            want,
            "the last sub-job of {id} ends with it"
        );
    }
    let dir = crate_dir(&env, &completed).await;
    check_completed_manifest(&dir, &digest, &code);
    assert_eq!(graph_entity(&dir, "#outcome-run")["value"], 0);
    assert_eq!(
        graph_entity(&crate_dir(&env, &failed).await, "#outcome-run")["value"],
        3
    );
    tampering_and_another_key_fail(&env, &completed, &key, &dir).await;
    found_by_digest(&env, &completed, &failed, &code, &dir).await;
    the_data_lake_example_keeps_what_the_search_finds(&env, &key, 3).await;
}

/// A sweep's members (a job array on Slurm) have crates that validate like any job's and
/// name their sweep and index.
#[tokio::test]
async fn a_sweep_members_crate_validates_and_names_its_sweep_and_index() {
    let env = common::Env::new(SITE, JOB_TYPES).await;
    let (key, _) = agent_key_and_digest(&env).await;
    let new: hpcsera_api_types::NewSweep = serde_json::from_value(json!({
        "site": SITE,
        "jobType": "nap",
        "parameterSets": [{"seconds": 1}, {"seconds": 2}],
    }))
    .unwrap();
    let sweep = env.client.submit_sweep(&new, None).await.unwrap();
    let members = env
        .client
        .sweep_jobs(&sweep.id, &[], None, None)
        .await
        .unwrap()
        .jobs;
    assert_eq!(members.len(), 2);
    for m in &members {
        let job = wait_end(&env, &m.id).await;
        assert_eq!(job.status, JobStatus::Completed, "{}", env.agent_log());
        let dir = crate_dir(&env, &m.id).await;
        check_with_python_tools(&dir);
        let (ok, text) = verify(&env, &m.id, &key, Some(&dir)).await;
        assert_eq!(ok, 0, "{text}");
        assert_eq!(graph_entity(&dir, "#sweep")["value"], sweep.id.as_str());
        assert_eq!(
            graph_entity(&dir, "#sweep-index")["value"],
            json!(m.sweep_index.unwrap())
        );
    }
}

/// `examples/datalake/ingest.py`: every ended job's crate, verified, in a plain directory;
/// its index answers as the server's search does, and a second run adds nothing.
async fn the_data_lake_example_keeps_what_the_search_finds(
    env: &common::Env,
    key: &str,
    jobs: u64,
) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/datalake/ingest.py");
    let lake = env.path().join("lake");
    // Not blocking: the server runs on this test's runtime.
    let ingest = || async {
        let out = tokio::process::Command::new("python3")
            .arg(&script)
            .arg(&lake)
            .arg(key)
            .env("HPCSERA_URL", &env.url)
            .env("HPCSERA_TOKEN", &env.token)
            .env("HPCSERA_BIN", common::bin())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(ingest().await["ingested"], jobs);
    assert_eq!(ingest().await["ingested"], 0, "a second run adds nothing");
    let index: Value =
        serde_json::from_slice(&std::fs::read(lake.join("index.json")).unwrap()).unwrap();
    let index = index["sha256"].as_object().unwrap();
    assert!(!index.is_empty());
    for (sha, entries) in index {
        let mut lake_jobs: Vec<&str> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["job"].as_str().unwrap())
            .collect();
        lake_jobs.sort();
        lake_jobs.dedup();
        let found = env
            .client
            .search_provenance(&hpcsera_client::ProvenanceQuery {
                sha256: Some(sha.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        let mut server_jobs: Vec<&str> = found.jobs.iter().map(|j| j.job_id.as_str()).collect();
        server_jobs.sort();
        assert_eq!(lake_jobs, server_jobs, "{sha}");
        if entries[0]["role"] == "result" {
            let object = std::fs::read(lake.join("objects").join(&sha[..2]).join(sha)).unwrap();
            assert_eq!(&hex::encode(sha2::Sha256::digest(object)), sha);
        }
    }
}

/// One changed byte (in the crate, or in the server's copy) or a signature by another key
/// makes `verify` fail with 74.
async fn tampering_and_another_key_fail(env: &common::Env, id: &str, key: &str, dir: &Path) {
    let manifest = std::fs::read(dir.join("ro-crate-metadata.json")).unwrap();
    let tampered = env.path().join("tampered");
    copy_crate(dir, &tampered);
    let mut bytes = manifest.clone();
    let at = bytes.iter().position(|b| *b == b'4').unwrap();
    bytes[at] = b'5';
    std::fs::write(tampered.join("ro-crate-metadata.json"), &bytes).unwrap();
    let (c, text) = verify(env, id, key, Some(&tampered)).await;
    assert_eq!(c, 74, "{text}");
    assert!(text.contains("does NOT verify"), "{text}");
    // A result file changed after the fact.
    let changed = env.path().join("changed-result");
    copy_crate(dir, &changed);
    std::fs::write(changed.join("results/numbers.txt"), "1\n2\n3\n5\n").unwrap();
    assert_eq!(verify(env, id, key, Some(&changed)).await.0, 74);
    // Re-signed with another key: valid for that key, not for the agent's.
    let other = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let resigned = env.path().join("resigned");
    copy_crate(dir, &resigned);
    std::fs::write(resigned.join("ro-crate-metadata.json"), &bytes).unwrap();
    let other_key =
        hpcsera_api_types::provenance::AgentKey(other.verifying_key().to_bytes()).to_string();
    let sig = SignatureFile {
        algorithm: "ed25519".into(),
        public_key: other_key.clone(),
        signature: encode_signature(&other.sign(&bytes).to_bytes()),
    };
    std::fs::write(
        resigned.join("ro-crate-metadata.json.sig"),
        serde_json::to_vec(&sig).unwrap(),
    )
    .unwrap();
    assert_eq!(verify(env, id, key, Some(&resigned)).await.0, 74);
    assert_eq!(
        verify(env, id, &other_key, Some(&resigned)).await.0,
        0,
        "the forger's own key verifies it"
    );
    // A compromised server changes its copy: the client notices.
    sqlx::any::install_default_drivers();
    let mut db = <sqlx::AnyConnection as sqlx::Connection>::connect(&env.db_url)
        .await
        .unwrap();
    sqlx::query("UPDATE job_provenance SET manifest = $1 WHERE job_seq = (SELECT seq FROM jobs WHERE id = $2)")
        .bind(&bytes)
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    let (c, text) = verify(env, id, key, None).await;
    assert_eq!(c, 74, "{text}");
    sqlx::query("UPDATE job_provenance SET manifest = $1 WHERE job_seq = (SELECT seq FROM jobs WHERE id = $2)")
        .bind(&manifest)
        .bind(id)
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(verify(env, id, key, None).await.0, 0);
}

/// `hpcsera provenance search --file` finds the job that made a result file; by code digest
/// it finds both jobs that ran the code.
async fn found_by_digest(env: &common::Env, completed: &str, failed: &str, code: &str, dir: &Path) {
    let file = dir.join("results/numbers.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1\n2\n3\n4\n");
    let (ok, out, err) = env
        .hpcsera(&[
            "provenance",
            "search",
            "--file",
            file.to_str().unwrap(),
            "--output",
            "json",
        ])
        .await;
    assert!(ok, "{err}");
    let found: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = found["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [completed]);
    let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&file).unwrap()));
    assert_eq!(found["jobs"][0]["matches"][0]["sha256"], sha);
    let (ok, out, _) = env
        .hpcsera(&[
            "provenance",
            "search",
            "--code-sha256",
            code,
            "--output",
            "json",
        ])
        .await;
    assert!(ok);
    let found: Value = serde_json::from_str(&out).unwrap();
    let mut ids: Vec<&str> = found["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = [completed, failed];
    want.sort();
    assert_eq!(ids, want);
}
