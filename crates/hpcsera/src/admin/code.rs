//! `hpcsera admin code …`: a member of the project approves or rejects a code bundle, lists
//! bundles, and prunes old ones.

use super::parse_age;
use crate::cli::{json_output, print_json};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hpcsera_store::{now_ms, Store};
use serde_json::json;

/// What `code approve` and `code reject` both take.
#[derive(Args)]
pub(super) struct Decision {
    id: String,
    #[arg(long)]
    project: String,
    /// The person who decides: a member of the project.
    #[arg(long)]
    user: String,
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand)]
pub(super) enum CodeCmd {
    /// Approve a bundle for the exact digest the site's agent reported; waiting jobs are queued.
    Approve(Decision),
    /// Reject a bundle: its waiting jobs fail with the reason; its bytes are deleted.
    Reject(Decision),
    /// A project's bundles with both digests side by side.
    List {
        #[arg(long)]
        project: String,
    },
    /// Retention: forget pending and approved bundles older than this that no waiting or
    /// running job references, and delete bytes no project keeps (run it from cron).
    Prune {
        /// Age: a duration such as 30d or 12h.
        #[arg(long, default_value = "30d")]
        older_than: String,
    },
}

/// Approves or rejects a code bundle as `user` (a member of the project), as the web UI does
/// (`hpcsera_server::bundles::decide_bundle`: the decision, then the rejected file's
/// retention). Agents' long polls notice within their 2 s re-check: this process cannot wake
/// the server's waiters.
pub(super) async fn decide_code(
    store: &Store,
    code_dir: &std::path::Path,
    project: &str,
    id: &str,
    user: &str,
    approve: bool,
    reason: Option<&str>,
) -> anyhow::Result<hpcsera_store::CodeDecision> {
    if !hpcsera_api_types::is_code_id(id) {
        bail!("{id:?} is not a code bundle id (64 lower-case hex digits)");
    }
    hpcsera_server::bundles::decide_bundle(store, code_dir, project, id, user, approve, reason)
        .await
        .map_err(|e| match e {
            hpcsera_store::StoreError::Invalid(f) => anyhow::anyhow!(
                "{}",
                f.iter()
                    .map(|f| format!("--{}: {}", f.field, f.problem))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::Error::new(other),
        })
}

/// `admin code list`: a project's bundles with both digests.
async fn list(store: &Store, project: &str) -> anyhow::Result<()> {
    let pid = store
        .project_id(project)
        .await
        .with_context(|| format!("project {project:?}"))?;
    let bundles = store.list_bundles(pid).await?;
    if json_output() {
        return print_json(&json!({ "bundles": bundles }));
    }
    println!("id\tstatus\tsize\tclient_sha256\thpc_sha256\tdecided_by");
    for b in bundles {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            b.id,
            b.status,
            b.size,
            b.id,
            b.hpc_sha256.as_deref().unwrap_or("-"),
            b.decided_by.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

pub(super) async fn code(
    store: &Store,
    code_dir: &std::path::Path,
    cmd: CodeCmd,
) -> anyhow::Result<()> {
    let (decision, approve) = match cmd {
        CodeCmd::List { project } => return list(store, &project).await,
        CodeCmd::Prune { older_than } => {
            let age = parse_age("--older-than", &older_than)?;
            let gone = store.prune_bundles(now_ms() - age).await?;
            let mut deleted = 0;
            for id in &gone {
                let path = hpcsera_server::code_file_path(code_dir, id);
                if store.delete_code_file_if_unkept(id, &path).await? {
                    deleted += 1;
                }
            }
            if json_output() {
                return print_json(
                    &json!({ "bundlesForgotten": gone.len(), "filesDeleted": deleted }),
                );
            }
            println!("{deleted} code bundle file(s) deleted");
            return Ok(());
        }
        CodeCmd::Approve(d) => (d, true),
        CodeCmd::Reject(d) => (d, false),
    };
    let Decision {
        id,
        project,
        user,
        reason,
    } = decision;
    let d = decide_code(
        store,
        code_dir,
        &project,
        &id,
        &user,
        approve,
        reason.as_deref(),
    )
    .await?;
    if json_output() {
        return print_json(&json!({ "bundle": d.bundle, "jobsChanged": d.jobs_changed }));
    }
    println!("client_sha256\t{}", d.bundle.id);
    println!(
        "hpc_sha256\t{}",
        d.bundle.hpc_sha256.as_deref().unwrap_or("-")
    );
    println!(
        "code bundle {} {} by {user}; {} waiting job(s) {}",
        d.bundle.id,
        d.bundle.status,
        d.jobs_changed.len(),
        if approve { "queued" } else { "failed" }
    );
    Ok(())
}
