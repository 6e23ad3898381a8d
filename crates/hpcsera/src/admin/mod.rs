//! `hpcsera admin …`: bootstrap and administration on the server host, straight on the
//! database (no token needed: whoever can read the database is the administrator).

mod access;
mod code;
mod keys;
mod people;
mod tokens;

use crate::cli::{json_output, print_json};
pub(crate) use crate::cli::{parse_age, parse_expiry};
use crate::DbArgs;
use anyhow::bail;
use clap::{Args, Subcommand};
use code::CodeCmd;
use hpcsera_api_types::{is_valid_name, RoleSet};
use hpcsera_store::{now_ms, Store};
use people::{MemberCmd, ProjectCmd, UserCmd};
use serde_json::json;
use tokens::TokenCmd;

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    db: DbArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users (people).
    #[command(subcommand)]
    User(UserCmd),
    /// Projects (the unit of separation).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Project memberships.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Sites (HPC systems with an agent).
    #[command(subcommand)]
    Site(SiteCmd),
    /// Code bundles: approve or reject (a member of the project decides).
    #[command(subcommand)]
    Code(CodeCmd),
    /// The audit log, newest first, with filters (the web UI's admin audit page reads the same).
    Audit(access::AuditArgs),
    /// Delete finished jobs (with their events, output, results, webhook deliveries) and audit
    /// records older than an age, e.g. `--jobs-older-than 90d --audit-older-than 30d` (for cron).
    Prune {
        /// Jobs that ended longer ago than this (30d, 12h, …).
        #[arg(long)]
        jobs_older_than: Option<String>,
        /// Audit records older than this.
        #[arg(long)]
        audit_older_than: Option<String>,
    },
}

#[derive(Subcommand)]
enum SiteCmd {
    /// Add a site (agents also create their site when they first publish job types).
    Add { name: String },
    /// List sites.
    List,
}

fn check_name(kind: &str, name: &str) -> anyhow::Result<()> {
    if !is_valid_name(name, true) {
        bail!("{kind} name {name:?} must start with a letter or '_' and contain only letters, digits, '_', '-', '.' (at most 64)");
    }
    Ok(())
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let store = args.db.open().await?;
    let code_dir = args.db.code_dir();
    let r = run_on(&store, &code_dir, args.command).await;
    store.close().await;
    r
}

async fn run_on(
    store: &Store,
    code_dir: &std::path::Path,
    cmd: AdminCommand,
) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::User(c) => people::user(store, c).await,
        AdminCommand::Project(c) => people::project(store, c).await,
        AdminCommand::Member(c) => people::member(store, c).await,
        AdminCommand::Token(c) => tokens::token(store, c).await,
        AdminCommand::Prune {
            jobs_older_than,
            audit_older_than,
        } => prune(store, jobs_older_than, audit_older_than).await,
        AdminCommand::Site(c) => site(store, c).await,
        AdminCommand::Code(c) => code::code(store, code_dir, c).await,
        AdminCommand::Audit(a) => access::audit(store, a).await,
    }
}

/// A `--roles` value: comma-separated role names, or "all".
fn parse_roles(roles: &str) -> anyhow::Result<RoleSet> {
    if roles.trim() == "all" {
        Ok(RoleSet::all())
    } else {
        RoleSet::parse_list(roles).map_err(|e| anyhow::anyhow!("--roles: {e}"))
    }
}

async fn prune(
    store: &Store,
    jobs_older_than: Option<String>,
    audit_older_than: Option<String>,
) -> anyhow::Result<()> {
    if jobs_older_than.is_none() && audit_older_than.is_none() {
        bail!("say what to prune: --jobs-older-than AGE and/or --audit-older-than AGE");
    }
    let mut counts = serde_json::Map::new();
    if let Some(age) = jobs_older_than {
        let n = store
            .prune_jobs(now_ms() - parse_age("--jobs-older-than", &age)?)
            .await?;
        counts.insert("jobsDeleted".into(), json!(n));
        if !json_output() {
            println!("{n} finished jobs deleted");
        }
    }
    if let Some(age) = audit_older_than {
        let n = store
            .prune_audit(now_ms() - parse_age("--audit-older-than", &age)?)
            .await?;
        counts.insert("auditRecordsDeleted".into(), json!(n));
        if !json_output() {
            println!("{n} audit records deleted");
        }
    }
    if json_output() {
        print_json(&counts)?;
    }
    Ok(())
}

async fn site(store: &Store, cmd: SiteCmd) -> anyhow::Result<()> {
    match cmd {
        SiteCmd::Add { name } => {
            check_name("site", &name)?;
            store.add_site(&name).await?;
            println!("site {name} added");
        }
        SiteCmd::List => {
            let sites = store.list_site_projects().await?;
            if json_output() {
                let list: Vec<_> = sites
                    .iter()
                    .map(|(project, s)| {
                        let mut v = serde_json::to_value(s).unwrap_or_default();
                        v["project"] = json!(project);
                        v
                    })
                    .collect();
                return print_json(&json!({ "sites": list }));
            }
            for (project, s) in sites {
                println!(
                    "{}\tproject={}\tlast_seen={}\tagent={}\tjob_types={}",
                    s.name,
                    project.as_deref().unwrap_or("-"),
                    s.last_seen_at.as_deref().unwrap_or("never"),
                    s.agent_version.as_deref().unwrap_or("-"),
                    s.job_types.join(",")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now = 1_000_000;
        assert_eq!(parse_expiry("30d", now).unwrap(), now + 30 * 86_400_000);
        assert_eq!(parse_expiry("2h", now).unwrap(), now + 7_200_000);
        assert!(parse_expiry("0d", now).is_err());
        assert!(parse_expiry("5w", now).is_err());
        assert!(parse_expiry("soon", now).is_err());
        assert!(parse_expiry("1970-01-01T00:00:00Z", now).is_err());
        assert!(parse_expiry("2999-01-01T00:00:00Z", now).is_ok());
    }
}
