//! `hpcsera admin user|project|member …`: people, projects and who may do what where.

use super::{check_name, parse_age, parse_roles};
use crate::cli::{json_output, print_json};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hpcsera_store::{fmt_ms, Store};
use serde_json::json;
use std::io::BufRead;

#[derive(Subcommand)]
pub(super) enum UserCmd {
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
    Key(super::keys::KeyCmd),
}

#[derive(Subcommand)]
pub(super) enum ProjectCmd {
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
pub(super) struct Membership {
    #[arg(long)]
    user: String,
    #[arg(long)]
    project: String,
}

#[derive(Subcommand)]
pub(super) enum MemberCmd {
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

pub(super) async fn member(store: &Store, cmd: MemberCmd) -> anyhow::Result<()> {
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

pub(super) async fn user(store: &Store, cmd: UserCmd) -> anyhow::Result<()> {
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
        UserCmd::Key(c) => super::keys::run(store, c).await?,
        UserCmd::Admin { name, off } => super::access::set_admin(store, &name, !off).await?,
        UserCmd::Disable { name } => super::access::set_disabled(store, &name, true).await?,
        UserCmd::Enable { name } => super::access::set_disabled(store, &name, false).await?,
        UserCmd::List => {
            let users = store.list_users().await?;
            if json_output() {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| json!({"name": u.name, "admin": u.is_admin, "createdAt": fmt_ms(u.created_at)}))
                    .collect();
                return print_json(&json!({ "users": list }));
            }
            for u in users {
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

pub(super) async fn project(store: &Store, cmd: ProjectCmd) -> anyhow::Result<()> {
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
            let projects = store.list_projects().await?;
            if json_output() {
                let list: Vec<_> = projects
                    .iter()
                    .map(|(name, desc, members)| json!({"name": name, "description": desc, "members": members}))
                    .collect();
                return print_json(&json!({ "projects": list }));
            }
            for (name, desc, members) in projects {
                println!("{name}\t{}\t{desc}", members.join(","));
            }
        }
    }
    Ok(())
}
