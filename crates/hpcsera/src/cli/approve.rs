//! `hpcsera code approve DIGEST --sign KEYFILE | --ssh-agent`: a person approves a code
//! bundle with their SSH key, on their own machine.
//!
//! It shows what is approved (both digests, size, who uploaded, the files when the server
//! lists them) and the exact message, asks for confirmation (`--yes` skips it), signs the
//! canonical message as an OpenSSH `SSHSIG` in the namespace `hpcsera-code` — with an
//! Ed25519/ECDSA key file, or through the SSH agent so the key never leaves it — and uploads
//! it (`POST /code/{id}/approval`). The signature is the same that
//! `ssh-keygen -Y sign -n hpcsera-code -f KEY` makes; agents check it against their own
//! allowed-signers file. The token only carries the upload: the signature names the person.

use super::output::clean;
use super::parse_expiry;
use anyhow::{bail, Context};
use clap::Args;
use hpcsera_approval::{ApprovalMessage, SshAgent};
use hpcsera_client::{Client, CodeBundle, CodeFileList, CodeStatus, SignedApproval};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args)]
pub struct ApproveArgs {
    /// The bundle's digest (its id, the SHA-256 of its bytes).
    id: String,
    /// Sign with this OpenSSH private key file (Ed25519 or ECDSA, without a passphrase; use
    /// --ssh-agent for protected or RSA keys).
    #[arg(
        long,
        value_name = "KEYFILE",
        conflicts_with = "ssh_agent",
        required_unless_present = "ssh_agent"
    )]
    sign: Option<PathBuf>,
    /// Sign with a key held by the SSH agent ($SSH_AUTH_SOCK).
    #[arg(long)]
    ssh_agent: bool,
    /// With --ssh-agent: which key (its fingerprint, SHA256:…); default: the agent's only key,
    /// or the one you registered here.
    #[arg(long, requires = "ssh_agent")]
    key: Option<String>,
    /// A site the approval is for (repeat for several); default: the project's only site.
    #[arg(long = "site", value_name = "SITE")]
    sites: Vec<String>,
    /// The approval ends after this long (30d, 12h) or at this time (RFC 3339); default: never.
    #[arg(long)]
    expires: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

pub async fn run(client: &Client, a: ApproveArgs) -> anyhow::Result<()> {
    if !hpcsera_api_types::is_code_id(&a.id) {
        bail!(
            "{:?} is not a code bundle id (64 lower-case hex digits)",
            a.id
        );
    }
    let bundle = client.code_status(&a.id).await?;
    let files = client.code_files(&a.id).await?;
    show_bundle(&bundle, &files)?;
    let me = client.whoami().await?;
    let sites = choose_sites(client, a.sites.clone()).await?;
    let expires = match &a.expires {
        None => None,
        Some(e) => Some(parse_expiry(e, hpcsera_store::now_ms())? / 1000),
    };
    let message = ApprovalMessage::new(&a.id, &me.project, &sites, expires)
        .map_err(|e| anyhow::anyhow!("cannot make the approval message: {e}"))?
        .render();
    eprintln!("\nThe approval message (what you sign):\n\n{message}");
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            bail!("not asking on a non-terminal: check the above and run again with --yes");
        }
        if !super::wait::ask_yes_no(format!(
            "Sign and upload this approval as {}?",
            clean(&me.user)
        ))
        .await
        {
            bail!("not approved");
        }
    }
    let signature = match &a.sign {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            hpcsera_approval::sign_with_private_key(&text, message.as_bytes())
                .map_err(anyhow::Error::msg)?
        }
        None => sign_with_agent(client, a.key.as_deref(), &message).await?,
    };
    let b = client
        .approve_code_signed(
            &a.id,
            &SignedApproval {
                message,
                signature,
                key_fingerprint: None,
            },
        )
        .await?;
    if super::json_output() {
        return super::print_json(&b);
    }
    println!(
        "{} {} by {}",
        b.id,
        b.status,
        clean(b.decided_by.as_deref().unwrap_or("-"))
    );
    Ok(())
}

/// Shows what is about to be approved; refuses what cannot be approved.
fn show_bundle(b: &CodeBundle, files: &CodeFileList) -> anyhow::Result<()> {
    eprintln!("code bundle\t{}", b.id);
    eprintln!("uploaded by\t{} at {}", clean(&b.uploaded_by), b.created_at);
    eprintln!("size\t\t{} bytes", b.size);
    eprintln!("client sha256\t{}", b.id);
    eprintln!(
        "HPC sha256\t{}",
        b.hpc_sha256.as_deref().unwrap_or("(not reported yet)")
    );
    show_files(files);
    if b.status != CodeStatus::PendingApproval {
        bail!("the bundle is {}, not waiting for approval", b.status);
    }
    if !b.digests_match {
        bail!("the site's agent has not reported the same digest yet (HPC sha256 above); approval binds the digest computed on the cluster");
    }
    Ok(())
}

/// The bundle's entries as the server lists them (never unpacked here), one a line:
/// mode, kind, size, path (and a link's target), names cleaned of control characters.
fn show_files(files: &CodeFileList) {
    eprintln!("files\t\t{}", files.files.len());
    for f in &files.files {
        let link = f
            .link_target
            .as_deref()
            .map(|t| format!(" -> {}", clean(t)))
            .unwrap_or_default();
        eprintln!(
            "  {} {:<8} {:>10}  {}{link}",
            f.mode,
            f.kind,
            f.size,
            clean(&f.path)
        );
    }
    if files.truncated {
        eprintln!("  … (more entries than the server lists)");
    }
    if let Some(p) = &files.problem {
        eprintln!("  the archive cannot be read to its end: {}", clean(p));
    }
}

/// The sites named, or the project's only site.
async fn choose_sites(client: &Client, named: Vec<String>) -> anyhow::Result<Vec<String>> {
    if !named.is_empty() {
        return Ok(named);
    }
    let sites = client.sites().await?;
    match sites.as_slice() {
        [one] => Ok(vec![one.name.clone()]),
        [] => bail!("the project has no site yet; name one with --site"),
        many => bail!(
            "name the site(s) the approval is for with --site (the project has: {})",
            many.iter()
                .map(|s| clean(&s.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Signs through the SSH agent with the chosen key: `--key`, the agent's only key, or the one
/// key of the agent's that is registered here.
async fn sign_with_agent(
    client: &Client,
    want: Option<&str>,
    message: &str,
) -> anyhow::Result<String> {
    let mut agent = SshAgent::from_env().map_err(anyhow::Error::msg)?;
    let keys = agent.keys().map_err(anyhow::Error::msg)?;
    let chosen = match want {
        Some(fp) => keys.iter().find(|k| k.fingerprint == fp),
        None if keys.len() == 1 => keys.first(),
        None => {
            let mine = client.list_keys().await?;
            let registered: Vec<_> = keys
                .iter()
                .filter(|k| mine.iter().any(|m| m.fingerprint == k.fingerprint))
                .collect();
            match registered.as_slice() {
                [one] => Some(*one),
                [] => bail!("none of the ssh-agent's {} keys is registered here: register yours (web UI, SSH keys) or choose one with --key", keys.len()),
                _ => bail!("several of the ssh-agent's keys are registered here: choose one with --key SHA256:…"),
            }
        }
    };
    let key = chosen.with_context(|| match want {
        Some(fp) => format!("the ssh-agent holds no key {fp}"),
        None => "the ssh-agent holds no keys (ssh-add KEYFILE)".to_string(),
    })?;
    eprintln!(
        "signing with {} ({}) through the ssh-agent",
        key.fingerprint,
        clean(&key.comment)
    );
    agent
        .sign(&key.key, message.as_bytes())
        .map_err(anyhow::Error::msg)
}
