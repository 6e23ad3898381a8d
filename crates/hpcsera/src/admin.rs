//! `hpcsera admin …`: bootstrap and administration on the server host, straight on the
//! database (no token needed: whoever can read the database is the administrator).

use crate::DbArgs;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hpcsera_api_types::{is_valid_name, RoleSet};
use hpcsera_store::{fmt_ms, now_ms, parse_rfc3339_ms, NewToken, Store};
use std::io::BufRead;

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
    Code(crate::admin_code::CodeCmd),
    /// The audit log, newest first, with filters (the web UI's admin audit page reads the same).
    Audit(crate::admin_access::AuditArgs),
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
enum UserCmd {
    /// Add a user.
    Add {
        name: String,
        /// Make the user an administrator (web UI).
        #[arg(long)]
        admin: bool,
        /// Read a password (for the web UI) from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a one-time link where the person sets a password (and so can log in to the web
    /// UI); adds the user, without a password, if it does not exist.
    Invite {
        name: String,
        /// The URL people reach the server at (the link starts with it).
        #[arg(
            long,
            env = "HPCSERA_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        public_url: String,
        /// How long the link works: a duration such as 72h or 7d.
        #[arg(long, default_value = "72h")]
        expires: String,
    },
    /// List users.
    List,
    /// Make a user an administrator of the web UI (`--off`: no longer).
    Admin {
        name: String,
        #[arg(long)]
        off: bool,
    },
    /// Disable an account: its sessions end, it cannot log in, its tokens are refused.
    Disable { name: String },
    /// Enable a disabled account again.
    Enable { name: String },
    /// A person's SSH public keys: their signed code approvals are checked against them.
    #[command(subcommand)]
    Key(crate::admin_keys::KeyCmd),
}

#[derive(Subcommand)]
enum ProjectCmd {
    /// Add a project.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List projects and their members.
    List,
    /// Print the project's webhook signing secret (receivers verify X-Hpcsera-Signature with it).
    WebhookSecret { name: String },
}

/// Who and where: a user in a project.
#[derive(Args)]
struct Membership {
    #[arg(long)]
    user: String,
    #[arg(long)]
    project: String,
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Make a user a member of a project (with all eight roles unless --roles says fewer).
    Add {
        #[command(flatten)]
        who: Membership,
        /// The roles the member may use in the project (comma-separated, or "all"): the most
        /// any token of theirs there can do. Given for an existing member, it replaces theirs.
        #[arg(long)]
        roles: Option<String>,
    },
    /// Change an existing member's roles (their tokens can do at most these at once).
    Roles {
        #[command(flatten)]
        who: Membership,
        /// Comma-separated roles, or "all".
        #[arg(long)]
        roles: String,
    },
    /// Remove a membership (the user's tokens for the project stop working).
    Remove {
        #[command(flatten)]
        who: Membership,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token; the secret is printed once, as the last line of stdout.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        project: String,
        /// Comma-separated roles: GET_JobStatus UPDATE_JobStatus GET_Job POST_Code GET_Code POST_Job UPDATE_Job DELETE_Job, or "all".
        #[arg(long)]
        roles: String,
        /// Restrict the token to one site.
        #[arg(long)]
        site: Option<String>,
        /// Expiry: a duration such as 30d, 12h, 45m, or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// A name to recognise the token by.
        #[arg(long, default_value = "admin-created")]
        name: String,
    },
    /// Revoke a token at once.
    Revoke { id: String },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum SiteCmd {
    /// Add a site (agents also create their site when they first publish job types).
    Add { name: String },
    /// List sites.
    List,
}

/// Parses `30d`, `12h`, `45m`, `90s` or an RFC 3339 time into an absolute time (Unix ms).
pub fn parse_expiry(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(t) = parse_rfc3339_ms(s) {
        if t <= now {
            bail!("--expires {s:?} is in the past");
        }
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--expires {s:?}: expected a duration like 30d, 12h, 45m or an RFC 3339 time")
    })?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => bail!("--expires {s:?}: the unit must be d, h, m or s"),
    };
    n.checked_mul(ms)
        .and_then(|d| d.checked_add(now))
        .context("--expires is too far away")
}

/// Parses an age such as `30d`, `12h`, `45m`, `90s` into milliseconds.
pub(crate) fn parse_age(flag: &str, s: &str) -> anyhow::Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .ok()
        .with_context(|| format!("{flag} {s:?}: expected a duration like 30d, 12h or 45m"))?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        "s" => 1_000,
        _ => bail!("{flag} {s:?}: the unit must be d, h, m or s"),
    };
    n.checked_mul(ms)
        .with_context(|| format!("{flag} is too long"))
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
        AdminCommand::User(c) => user(store, c).await,
        AdminCommand::Project(c) => project(store, c).await,
        AdminCommand::Member(c) => member(store, c).await,
        AdminCommand::Token(c) => token(store, c).await,
        AdminCommand::Prune {
            jobs_older_than,
            audit_older_than,
        } => prune(store, jobs_older_than, audit_older_than).await,
        AdminCommand::Site(c) => site(store, c).await,
        AdminCommand::Code(c) => crate::admin_code::code(store, code_dir, c).await,
        AdminCommand::Audit(a) => crate::admin_access::audit(store, a).await,
    }
}

async fn member(store: &Store, cmd: MemberCmd) -> anyhow::Result<()> {
    match cmd {
        MemberCmd::Add { who, roles: None } => {
            store.add_member(&who.user, &who.project).await?;
            println!("{} is a member of {}", who.user, who.project);
        }
        MemberCmd::Add {
            who,
            roles: Some(roles),
        } => {
            let set = parse_roles(&roles)?;
            store
                .add_member_with_roles(&who.user, &who.project, set)
                .await?;
            println!(
                "{} is a member of {} with roles {roles}",
                who.user, who.project
            );
        }
        MemberCmd::Roles { who, roles } => {
            let set = parse_roles(&roles)?;
            store.set_member_roles(&who.user, &who.project, set).await?;
            println!("{} has roles {roles} in {}", who.user, who.project);
        }
        MemberCmd::Remove { who } => {
            store.remove_member(&who.user, &who.project).await?;
            println!("{} is no longer a member of {}", who.user, who.project);
        }
    }
    Ok(())
}

async fn user(store: &Store, cmd: UserCmd) -> anyhow::Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            admin,
            password_stdin,
        } => {
            check_name("user", &name)?;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from stdin")?;
                let p = line.trim_end_matches(['\n', '\r']).to_string();
                if p.len() < 8 {
                    bail!("the password must have at least 8 characters");
                }
                Some(p)
            } else {
                None
            };
            store.create_user(&name, password.as_deref(), admin).await?;
            println!("user {name} added");
        }
        UserCmd::Invite {
            name,
            public_url,
            expires,
        } => {
            check_name("user", &name)?;
            let valid_ms = parse_age("--expires", &expires)?;
            let secret = store.create_invite(&name, valid_ms).await?;
            eprintln!(
                "an invitation for {name}, valid for {expires}, usable once: hand this link to them"
            );
            println!("{}/ui/invite/{secret}", public_url.trim_end_matches('/'));
        }
        UserCmd::Key(c) => crate::admin_keys::run(store, c).await?,
        UserCmd::Admin { name, off } => crate::admin_access::set_admin(store, &name, !off).await?,
        UserCmd::Disable { name } => crate::admin_access::set_disabled(store, &name, true).await?,
        UserCmd::Enable { name } => crate::admin_access::set_disabled(store, &name, false).await?,
        UserCmd::List => {
            for u in store.list_users().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    if u.is_admin { "admin" } else { "-" },
                    if u.disabled { "disabled" } else { "-" },
                    fmt_ms(u.created_at)
                );
            }
        }
    }
    Ok(())
}

async fn project(store: &Store, cmd: ProjectCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectCmd::Add { name, description } => {
            check_name("project", &name)?;
            store.create_project(&name, &description).await?;
            println!("project {name} added");
        }
        ProjectCmd::WebhookSecret { name } => {
            println!("{}", store.webhook_secret(&name).await?);
        }
        ProjectCmd::List => {
            for (name, desc, members) in store.list_projects().await? {
                println!("{name}\t{}\t{desc}", members.join(","));
            }
        }
    }
    Ok(())
}

async fn token(store: &Store, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            user,
            project,
            roles,
            site,
            expires,
            name,
        } => create_token(store, &user, &project, &roles, site, expires, &name).await?,
        TokenCmd::Revoke { id } => {
            store.revoke_token(&id, None).await?;
            println!("token {id} revoked");
        }
        TokenCmd::List { user } => {
            for t in store.list_tokens(user.as_deref()).await? {
                let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
                let state = if t.revoked_at.is_some() {
                    "revoked".to_string()
                } else if t.expires_at.is_some_and(|e| e <= now_ms()) {
                    "expired".to_string()
                } else {
                    "active".to_string()
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\tsite={}\texpires={}\tlast_used={}\t{state}",
                    t.id,
                    t.name,
                    t.user,
                    t.project,
                    roles.join(","),
                    t.site.as_deref().unwrap_or("*"),
                    t.expires_at.map(fmt_ms).unwrap_or_else(|| "never".into()),
                    t.last_used_at.map(fmt_ms).unwrap_or_else(|| "never".into()),
                );
            }
        }
    }
    Ok(())
}

/// A `--roles` value: comma-separated role names, or "all".
fn parse_roles(roles: &str) -> anyhow::Result<RoleSet> {
    if roles.trim() == "all" {
        Ok(RoleSet::all())
    } else {
        RoleSet::parse_list(roles).map_err(|e| anyhow::anyhow!("--roles: {e}"))
    }
}

/// Creates a token; the secret is printed once, as the last line of stdout.
async fn create_token(
    store: &Store,
    user: &str,
    project: &str,
    roles: &str,
    site: Option<String>,
    expires: Option<String>,
    name: &str,
) -> anyhow::Result<()> {
    let roles = parse_roles(roles)?;
    if let Some(s) = &site {
        check_name("site", s)?;
    }
    let expires_at = expires
        .as_deref()
        .map(|e| parse_expiry(e, now_ms()))
        .transpose()?;
    let (rec, secret) = store
        .create_token(&NewToken {
            user,
            project,
            name,
            roles,
            site: site.as_deref(),
            expires_at,
        })
        .await?;
    let role_names: Vec<&str> = rec.roles.iter().map(|r| r.as_str()).collect();
    eprintln!(
        "token {} for {user} in {project}: roles {}{}{}",
        rec.id,
        role_names.join(","),
        rec.site.map(|s| format!(", site {s}")).unwrap_or_default(),
        rec.expires_at
            .map(|e| format!(", expires {}", fmt_ms(e)))
            .unwrap_or_default(),
    );
    eprintln!("the secret is shown once; store it now:");
    println!("{secret}");
    Ok(())
}

async fn prune(
    store: &Store,
    jobs_older_than: Option<String>,
    audit_older_than: Option<String>,
) -> anyhow::Result<()> {
    if jobs_older_than.is_none() && audit_older_than.is_none() {
        bail!("say what to prune: --jobs-older-than AGE and/or --audit-older-than AGE");
    }
    if let Some(age) = jobs_older_than {
        let n = store
            .prune_jobs(now_ms() - parse_age("--jobs-older-than", &age)?)
            .await?;
        println!("{n} finished jobs deleted");
    }
    if let Some(age) = audit_older_than {
        let n = store
            .prune_audit(now_ms() - parse_age("--audit-older-than", &age)?)
            .await?;
        println!("{n} audit records deleted");
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
            for (project, s) in store.list_site_projects().await? {
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
