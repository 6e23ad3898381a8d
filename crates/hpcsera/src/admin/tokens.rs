//! `hpcsera admin token …`: tokens made on the server host (the same store call as the web
//! UI's tokens page); the secret is printed once.

use super::{check_name, parse_expiry, parse_roles};
use crate::cli::{json_output, print_json};
use clap::Subcommand;
use hpcsera_store::{fmt_ms, now_ms, NewToken, Store};
use serde_json::json;

#[derive(Subcommand)]
pub(super) enum TokenCmd {
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

pub(super) async fn token(store: &Store, cmd: TokenCmd) -> anyhow::Result<()> {
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
            let tokens = store.list_tokens(user.as_deref()).await?;
            if json_output() {
                let list: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "name": t.name, "user": t.user, "project": t.project,
                            "roles": t.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                            "site": t.site, "expiresAt": t.expires_at.map(fmt_ms),
                            "lastUsedAt": t.last_used_at.map(fmt_ms), "state": state(t),
                        })
                    })
                    .collect();
                return print_json(&json!({ "tokens": list }));
            }
            for t in &tokens {
                let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
                let state = state(t);
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

/// Whether a token is revoked, expired or active.
fn state(t: &hpcsera_store::TokenRecord) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now_ms()) {
        "expired"
    } else {
        "active"
    }
}

/// Creates a token; the secret is printed once, as the last line of stdout (or, with
/// `--output json`, in the object printed).
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
        rec.site
            .as_deref()
            .map(|s| format!(", site {s}"))
            .unwrap_or_default(),
        rec.expires_at
            .map(|e| format!(", expires {}", fmt_ms(e)))
            .unwrap_or_default(),
    );
    eprintln!("the secret is shown once; store it now:");
    if json_output() {
        return print_json(&json!({
            "id": rec.id, "user": user, "project": project, "roles": role_names,
            "site": rec.site, "expiresAt": rec.expires_at.map(fmt_ms), "secret": secret,
        }));
    }
    println!("{secret}");
    Ok(())
}
