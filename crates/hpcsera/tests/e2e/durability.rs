//! Acknowledged means durable: the real `hpcsera server` (SQLite), killed with SIGKILL while
//! many clients submit at once (so submissions are group-committed, `store/group_commit.rs`),
//! has every job it answered 201 for in its database afterwards.

use crate::test_server::token;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_store::Store;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts the server on `data`; returns the child and its address.
async fn start_server(data: &std::path::Path) -> (tokio::process::Child, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hpcsera"));
    cmd.args(["--log-format", "json", "server", "--listen", "127.0.0.1:0"])
        .args(["--rate-limit-per-second", "0", "--data-dir"])
        .arg(data)
        .env("HPCSERA_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let (child, addr) = crate::common::spawn_listening(cmd).await;
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_submission_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (client, agent, project_id) = {
        let store = Store::open_data_dir(&data).await.unwrap();
        store.create_user("u", None, false).await.unwrap();
        let project_id = store.create_project("p", "").await.unwrap();
        store.add_member("u", "p").await.unwrap();
        let agent_roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus].into_iter().collect();
        let agent = token(&store, "u", "p", "a", agent_roles, Some("s")).await;
        let client = token(&store, "u", "p", "c", RoleSet::all(), None).await;
        store.close().await;
        (client, agent, project_id)
    };
    let (mut server, url) = start_server(&data).await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{url}/api/v1/sites/s/jobTypes"))
        .bearer_auth(&agent)
        .json(
            &json!({"jobTypes": [{"name": "noop", "subJobs": [{"name": "run", "kind": "batch"}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // 16 clients submit as fast as they can; every 201 is written down.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, client, acked) = (
            http.clone(),
            url.clone(),
            client.clone(),
            acknowledged.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let r = http
                    .post(format!("{url}/api/v1/job"))
                    .bearer_auth(&client)
                    .json(&json!({"site": "s", "jobType": "noop"}))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() != 201 {
                    return;
                }
                let Ok(job) = r.json::<serde_json::Value>().await else {
                    return;
                };
                acked
                    .lock()
                    .unwrap()
                    .push(job["id"].as_str().unwrap().to_string());
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.start_kill().unwrap(); // SIGKILL
    server.wait().await.unwrap();
    for c in clients {
        let _ = c.await;
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(
        acked.len() > 16,
        "only {} submissions before the kill",
        acked.len()
    );

    let store = Store::open_data_dir(&data).await.unwrap();
    for id in &acked {
        assert!(
            store.get_job(project_id, id).await.is_ok(),
            "job {id} was acknowledged (201) but is gone after kill -9"
        );
    }
    eprintln!(
        "{} acknowledged submissions, all stored after kill -9",
        acked.len()
    );
}
