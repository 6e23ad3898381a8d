//! `hpcsera agent`: the HPC agent, on a login node, as an ordinary user.

use anyhow::Context;
use clap::Args;
use hpcsera_agent::provenance::Signer;
use hpcsera_agent::{read_token, Agent, AgentConfig, AgentError};
use std::path::PathBuf;

#[derive(Args)]
pub struct AgentArgs {
    /// The agent's config file (TOML).
    #[arg(long, short, env = "HPCSERA_AGENT_CONFIG")]
    config: PathBuf,
    /// Run one cycle and exit (for cron). Exits quietly when another agent holds the work
    /// directory.
    #[arg(long)]
    once: bool,
    /// Check the config file, print each job type's definition digest, and exit.
    #[arg(long)]
    check: bool,
    /// Print the agent's public signing key (`ed25519:…`; the key file is created 0600 when
    /// there is none yet) and exit. Clients verify provenance with it.
    #[arg(long)]
    show_key: bool,
}

/// Loads a config, turning its problems into one readable error.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    AgentConfig::load(path).map_err(|e| {
        let problems = e.problems();
        if problems.is_empty() {
            anyhow::anyhow!("{e}")
        } else {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            anyhow::anyhow!("the agent config is not valid:\n  {}", lines.join("\n  "))
        }
    })
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let mut cfg = load_config(&args.config)?;
    if cfg.ca_file.is_none() {
        // `--ca-file`/`HPCSERA_CA_FILE` when the config names none.
        cfg.ca_file = crate::cli::global().ca_file;
    }
    if args.check {
        println!(
            "{}: site {}, {} job types, batch adapter {}",
            args.config.display(),
            cfg.site,
            cfg.job_types.len(),
            cfg.batch.preset.as_str()
        );
        for jt in &cfg.job_types {
            println!(
                "job type {}: definition sha256:{}",
                jt.name,
                jt.definition_digest()
            );
        }
        return Ok(());
    }
    if args.show_key {
        let key_file = cfg.key_file();
        if let Some(dir) = key_file.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let signer = Signer::load_or_create(&key_file)?;
        println!("{}", signer.public());
        return Ok(());
    }
    let token = read_token(&cfg.token_file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut agent = match Agent::new(cfg, &token) {
        Ok(a) => a,
        Err(AgentError::Locked(dir)) if args.once => {
            tracing::info!(work_dir = %dir.display(), "another agent is running; nothing to do");
            return Ok(());
        }
        Err(e) => return Err(e).context("cannot start the agent"),
    };
    agent.start().await.context("cannot start the agent")?;
    if args.once {
        agent.once().await.context("agent cycle failed")?;
    } else {
        agent.run(crate::shutdown_signal()).await?;
    }
    Ok(())
}
