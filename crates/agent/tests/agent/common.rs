//! Helpers more than one module of the agent's tests use.

use hpcsera_agent::batch::BatchState;

/// Asserts that a batch job ended `Failed` with exit code `code`; the message is the state.
#[track_caller]
pub fn assert_failed_with(st: &BatchState, code: i32) {
    assert!(
        matches!(st, BatchState::Failed { exit_code: Some(c), .. } if *c == code),
        "{st:?}"
    );
}

/// A server on a fresh SQLite database in `dir` with user `u` in project `p`, and the agent's
/// token (site `fake`) written to `dir/token` (0600): (server URL, agent token, client token).
pub async fn fake_site_server(dir: &std::path::Path) -> (String, String, String) {
    use crate::test_server::{serve, token};
    use hpcsera_api_types::{Role, RoleSet};
    use std::os::unix::fs::PermissionsExt;
    let d = dir.display();
    let store = hpcsera_store::Store::connect(&format!("sqlite://{d}/db.sqlite"))
        .await
        .unwrap();
    store.create_user("u", None, false).await.unwrap();
    store.create_project("p", "").await.unwrap();
    store.add_member("u", "p").await.unwrap();
    let roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus].into_iter().collect();
    let agent_token = token(&store, "u", "p", "a", roles, Some("fake")).await;
    let client_token = token(&store, "u", "p", "c", RoleSet::all(), None).await;
    let url = serve(hpcsera_server::ServerConfig::default(), store).await;
    let token_file = dir.join("token");
    std::fs::write(&token_file, &agent_token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (url, agent_token, client_token)
}

/// An agent configuration for the site of [`fake_site_server`] in `d` (its token at
/// `d/token`, work dir `d/work`) at `url`, then `rest` (batch system, job types, …).
pub fn fake_site_config(d: &str, url: &str, rest: &str) -> String {
    format!(
        "server_url = \"{url}\"\ntoken_file = \"{d}/token\"\nsite = \"fake\"\nwork_dir = \"{d}/work\"\n{rest}"
    )
}

/// The request the agent makes to submit the `run` sub-job of job `job_id` (type `job_type` at
/// `site`) whose script was rendered into `dir` as `r`, and the script's exit-code file.
pub fn run_request(
    dir: &std::path::Path,
    r: hpcsera_agent::script::RenderedScript,
    (job_id, job_type, site): (&str, &str, &str),
    params: &serde_json::Map<String, serde_json::Value>,
    options: Vec<String>,
) -> (hpcsera_agent::SubmitRequest, std::path::PathBuf) {
    use hpcsera_agent::env::{batch_env, batch_job_name, JobContext};
    let ctx = JobContext {
        job_id: job_id.into(),
        job_type: job_type.into(),
        site: site.into(),
        job_dir: dir.to_path_buf(),
    };
    let env = batch_env(&ctx, "run", params, &r.exit_file).unwrap();
    let request = hpcsera_agent::SubmitRequest {
        script_path: r.path,
        work_dir: dir.to_path_buf(),
        job_name: batch_job_name(job_id, "run"),
        env,
        resources: Default::default(),
        options,
        stdout_path: dir.join("run.out"),
        stderr_path: dir.join("run.err"),
    };
    (request, r.exit_file)
}
