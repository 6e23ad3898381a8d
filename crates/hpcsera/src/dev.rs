//! `hpcsera dev`: a server on SQLite and an agent for site `local` in one process, with
//! example job types, a demo project and tokens — the one-command start.

use crate::DbArgs;
use anyhow::Context;
use clap::Args;
use hpcsera_agent::Agent;
use hpcsera_api_types::{Role, RoleSet};
use hpcsera_server::{Application, ServerConfig};
use hpcsera_store::{NewToken, Store, StoreError};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, env = "HPCSERA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    db: DbArgs,
    /// Batch system for site `local`: `auto` (Slurm when `sbatch` and `sinfo` work, else
    /// local processes), `local` or `slurm`.
    #[arg(long, default_value = "auto")]
    adapter: String,
}

const USER: &str = "dev";
const PROJECT: &str = "demo";
const SITE: &str = "local";

/// Example job types, for both the local adapter and Slurm (the tests run them too).
const JOB_TYPES: &str = concat!(
    "\n",
    include_str!("../fixtures/job_types/hello.toml"),
    "\n",
    include_str!("../fixtures/job_types/sleep.toml"),
    "\n",
    include_str!("../fixtures/job_types/pipeline.toml"),
);

fn slurm_works() -> bool {
    let ok = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    ok("sbatch", &["--version"]) && ok("sinfo", &["-h"])
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn ignore_exists<T>(r: Result<T, StoreError>) -> anyhow::Result<()> {
    match r {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let data_dir = args.db.data_dir();
    let dev_dir = data_dir.join("dev");
    std::fs::create_dir_all(&dev_dir)
        .with_context(|| format!("cannot create {}", dev_dir.display()))?;
    let store: Store = args.db.open().await?;

    ignore_exists(store.create_user(USER, None, true).await)?;
    ignore_exists(
        store
            .create_project(PROJECT, "hpcsera dev demo project")
            .await,
    )?;
    store.add_member(USER, PROJECT).await?;

    let agent_token_file = dev_dir.join("agent.token");
    let agent_token = agent_token(&store, &agent_token_file).await?;
    write_client_token(&store, &dev_dir.join("client.token")).await?;
    let preset = match args.adapter.as_str() {
        "auto" if slurm_works() => "slurm",
        "auto" | "local" => "local",
        "slurm" => "slurm",
        other => anyhow::bail!("--adapter must be auto, local or slurm, not {other:?}"),
    };
    let app = Application::build(
        ServerConfig {
            listen: args.listen.clone(),
            code_dir: dev_dir.join("code"),
            ..ServerConfig::default()
        },
        store,
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = app.local_addr()?;
    let url = format!("http://{addr}");
    let config_path = dev_dir.join("agent.toml");
    write_agent_config(
        &config_path,
        &url,
        &agent_token_file,
        &dev_dir.join("work"),
        preset,
    )?;
    let server = tokio::spawn(app.run_until(crate::shutdown_signal()));

    let cfg = crate::agent_cmd::load_config(&config_path)?;
    let mut agent = Agent::new(cfg, &agent_token).context("cannot start the agent")?;
    agent.start().await.context("cannot start the agent")?;

    print_banner(
        &url,
        &data_dir,
        &config_path,
        &dev_dir.join("client.token"),
        preset,
    );
    agent.run(crate::shutdown_signal()).await?;
    server.await.context("server task")??;
    Ok(())
}

/// The dev agent's token: the one in `file` while the store still accepts it, else a new one.
async fn agent_token(store: &Store, agent_token_file: &Path) -> anyhow::Result<String> {
    Ok(match std::fs::read_to_string(agent_token_file) {
        Ok(t) if store.authenticate(t.trim()).await?.is_ok() => t.trim().to_string(),
        _ => {
            let roles: RoleSet = [Role::GetJob, Role::UpdateJobStatus, Role::GetCode]
                .into_iter()
                .collect();
            let (_, secret) = store
                .create_token(&NewToken {
                    user: USER,
                    project: PROJECT,
                    name: "dev agent",
                    roles,
                    site: Some(SITE),
                    expires_at: None,
                })
                .await?;
            write_private(agent_token_file, &format!("{secret}\n"))?;
            secret
        }
    })
}

/// A new client token for the demo project (30 days), written to `file`.
async fn write_client_token(store: &Store, file: &Path) -> anyhow::Result<()> {
    let client_roles: RoleSet = [
        Role::PostJob,
        Role::GetJobStatus,
        Role::UpdateJob,
        Role::DeleteJob,
        Role::PostCode,
    ]
    .into_iter()
    .collect();
    let (_, client_token) = store
        .create_token(&NewToken {
            user: USER,
            project: PROJECT,
            name: "dev client",
            roles: client_roles,
            site: None,
            expires_at: Some(hpcsera_store::now_ms() + 30 * 86_400_000),
        })
        .await?;
    write_private(file, &format!("{client_token}\n"))
}

/// Writes the agent's config: new with the example job types, or the user's (kept) pointed
/// at this server and adapter.
fn write_agent_config(
    config_path: &Path,
    url: &str,
    agent_token_file: &Path,
    work_dir: &Path,
    preset: &str,
) -> anyhow::Result<()> {
    let config = format!(
        "# Written by `hpcsera dev`; edit the job types freely (rewritten only when deleted).\n\
         server_url = {url:?}\ntoken_file = {:?}\nsite = {SITE:?}\nwork_dir = {:?}\n\n\
         [poll]\nlong_poll_seconds = 20\nstatus_interval_seconds = 2\nidle_interval_seconds = 2\n\n\
         [batch]\npreset = {preset:?}\n{JOB_TYPES}",
        agent_token_file.display().to_string(),
        work_dir.display().to_string(),
    );
    if !config_path.exists() {
        write_private(config_path, &config)?;
    } else {
        // Keep the user's job types; point the file at this server and adapter.
        let old = std::fs::read_to_string(config_path)?;
        let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
        for l in lines.iter_mut() {
            if l.starts_with("server_url") {
                *l = format!("server_url = {url:?}");
            } else if l.starts_with("preset") {
                *l = format!("preset = {preset:?}");
            }
        }
        write_private(config_path, &(lines.join("\n") + "\n"))?;
    }
    Ok(())
}

/// What to run next.
fn print_banner(url: &str, data_dir: &Path, config_path: &Path, client_file: &Path, preset: &str) {
    println!(
        "\nhpcsera dev is running: server {url} (SQLite in {data}), agent for site {SITE:?} ({preset} adapter).\n\
         API docs: {url}/api/v1/docs\n\
         Agent config: {config}\n\n\
         Try it (a client token for project {PROJECT:?} is in {client}):\n\n\
         \x20 export HPCSERA_URL={url} HPCSERA_TOKEN=$(cat {client})\n\
         \x20 curl -s $HPCSERA_URL/api/v1/sites/local/jobTypes -H \"Authorization: Bearer $HPCSERA_TOKEN\"\n\
         \x20 curl -s -X POST $HPCSERA_URL/api/v1/job -H \"Authorization: Bearer $HPCSERA_TOKEN\" \\\n\
         \x20      -H 'Content-Type: application/json' -d '{{\"site\":\"local\",\"jobType\":\"hello\",\"parameters\":{{\"who\":\"you\"}}}}'\n\
         \x20 curl -s \"$HPCSERA_URL/api/v1/job/findJobsByStatus?limit=5\" -H \"Authorization: Bearer $HPCSERA_TOKEN\"\n\
         \x20 curl -s $HPCSERA_URL/api/v1/job/JOB_ID/output/stdout -H \"Authorization: Bearer $HPCSERA_TOKEN\"\n\n\
         Stop with Ctrl-C.",
        data = data_dir.display(),
        config = config_path.display(),
        client = client_file.display(),
    );
}
