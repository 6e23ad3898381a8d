//! `hpcsera admin user admin|disable|enable` and `hpcsera admin audit`: the same store calls
//! as the web UI's admin pages (`Store::set_user_admin`, `set_user_disabled`, `audit_page`).

use super::parse_age;
use anyhow::{bail, Context};
use clap::Args;
use hpcsera_store::{fmt_ms, now_ms, parse_rfc3339_ms, AuditQuery, Store, MAX_AUDIT_PAGE};

/// Filters of `admin audit` (all optional).
#[derive(Args)]
pub(super) struct AuditArgs {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    project: Option<String>,
    /// The start of the request path, e.g. `/api/v1/job` or `/ui/admin`.
    #[arg(long)]
    action: Option<String>,
    /// From: an age (`24h`, `7d`: that long ago) or an RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Until (exclusive): an age or an RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    /// Most records (at most 500).
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub(super) async fn set_admin(store: &Store, name: &str, admin: bool) -> anyhow::Result<()> {
    store
        .set_user_admin(name, admin)
        .await
        .with_context(|| format!("user {name:?}"))?;
    if admin {
        println!("{name} is an administrator");
    } else {
        println!("{name} is no longer an administrator");
    }
    Ok(())
}

pub(super) async fn set_disabled(store: &Store, name: &str, disabled: bool) -> anyhow::Result<()> {
    store
        .set_user_disabled(name, disabled)
        .await
        .with_context(|| format!("user {name:?}"))?;
    if disabled {
        println!("{name} is disabled: sessions ended, tokens refused");
    } else {
        println!("{name} is enabled");
    }
    Ok(())
}

/// A point in time: an RFC 3339 time, or an age before now.
fn parse_when(flag: &str, s: &str) -> anyhow::Result<i64> {
    match parse_rfc3339_ms(s) {
        Some(t) => Ok(t),
        None => Ok(now_ms() - parse_age(flag, s)?),
    }
}

pub(super) async fn audit(store: &Store, a: AuditArgs) -> anyhow::Result<()> {
    if a.limit == 0 || a.limit > MAX_AUDIT_PAGE {
        bail!("--limit must be 1 to {MAX_AUDIT_PAGE}");
    }
    let q = AuditQuery {
        user: a.user,
        project: a.project,
        action: a.action,
        since: a.since.map(|s| parse_when("--since", &s)).transpose()?,
        until: a.until.map(|s| parse_when("--until", &s)).transpose()?,
        before: None,
        limit: a.limit,
    };
    println!("at\tuser\tproject\tmethod\tpath\tstatus\ttoken");
    for (_, r) in store.audit_page(&q).await? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            fmt_ms(r.at),
            r.user.as_deref().unwrap_or("-"),
            r.project.as_deref().unwrap_or("-"),
            r.method,
            r.path,
            r.status,
            r.token_id.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}
