//! `hpcsera provenance …`: a job's signed RO-Crate manifest — show it, download the crate,
//! verify it client-side with the agent's key, and find which job made or used a file.
//!
//! `verify` trusts nothing the server says: it checks the Ed25519 signature over the exact
//! manifest bytes with the key given on the command line (from the agent's operator,
//! `hpcsera agent --show-key`), that the manifest is about the job asked for, and — for an
//! unpacked crate (`--crate DIR`) — that every result file has the SHA-256 and size the
//! manifest names. A manifest that does not verify exits with [`exit::NOT_VERIFIED`] (74).

use super::output::{self, clean};
use super::{client, exit, CliError, CliResult, Format};
use clap::{Args, Subcommand};
use hpcsera_api_types::provenance::{
    verify_manifest, AgentKey, ManifestFacts, SignatureFile, MANIFEST_FILE, MAX_MANIFEST_BYTES,
    SIGNATURE_FILE,
};
use hpcsera_client::ProvenanceQuery;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ProvenanceArgs {
    #[command(subcommand)]
    command: ProvenanceCmd,
}

#[derive(Subcommand)]
enum ProvenanceCmd {
    /// Print a job's manifest (ro-crate-metadata.json) exactly as the agent signed it.
    Show {
        job: String,
        /// Write it to this file instead of stdout.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Download a job's crate as a ZIP: manifest, signature, result files.
    Download {
        job: String,
        /// The ZIP file to write (default `<job>.crate.zip`).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Check a job's manifest against the agent's public key; exits 74 when it does not
    /// verify.
    Verify(VerifyArgs),
    /// Which jobs made or used a file: by SHA-256 (or a local file), code digest, job type,
    /// site and end time.
    Search(SearchArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The job id.
    job: String,
    /// The agent's public key (`ed25519:…`, as `hpcsera agent --show-key` prints it) or a
    /// file that holds it.
    #[arg(long)]
    agent_key: String,
    /// Verify an unpacked crate in this directory (offline) instead of asking the server.
    #[arg(long = "crate", value_name = "DIR")]
    crate_dir: Option<PathBuf>,
}

#[derive(Args)]
struct SearchArgs {
    /// A SHA-256 (64 hex digits) of a result, code bundle or input.
    #[arg(long, conflicts_with = "file")]
    sha256: Option<String>,
    /// A local file: its SHA-256 is searched for.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Only jobs that ran the code bundle with this SHA-256.
    #[arg(long)]
    code_sha256: Option<String>,
    #[arg(long)]
    job_type: Option<String>,
    #[arg(long)]
    site: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    ended_after: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    ended_before: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    /// Follow the pages to the end.
    #[arg(long)]
    all: bool,
}

pub async fn run(args: ProvenanceArgs) -> CliResult {
    match args.command {
        ProvenanceCmd::Show { job, out } => show(&job, out.as_deref()).await,
        ProvenanceCmd::Download { job, out } => download(&job, out).await,
        ProvenanceCmd::Verify(v) => verify(v).await,
        ProvenanceCmd::Search(s) => search(s, super::format()).await,
    }
}

async fn show(job: &str, out: Option<&Path>) -> CliResult {
    let m = client()?.provenance(job).await?;
    match out {
        Some(p) => std::fs::write(p, &m.manifest)?,
        None => std::io::stdout().write_all(&m.manifest)?,
    }
    Ok(exit::OK)
}

async fn download(job: &str, out: Option<PathBuf>) -> CliResult {
    let dest = out.unwrap_or_else(|| PathBuf::from(format!("{job}.crate.zip")));
    let (size, sha) = client()?
        .download_provenance_zip(job, &dest, 16 * 1024 * 1024 * 1024)
        .await?;
    eprintln!("wrote {} ({size} bytes, sha256 {sha})", dest.display());
    Ok(exit::OK)
}

/// The key given as text or in a file.
fn agent_key(arg: &str) -> CliResult<AgentKey> {
    let text = if arg.trim_start().starts_with("ed25519:") {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|e| CliError::usage(format!("--agent-key: cannot read {arg}: {e}")))?
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ed25519:"))
        .unwrap_or(text.trim());
    AgentKey::parse(line).map_err(|e| CliError::usage(format!("--agent-key: {e}")))
}

fn not_verified(job: &str, why: impl std::fmt::Display) -> CliError {
    CliError {
        code: exit::NOT_VERIFIED,
        message: format!("the provenance of job {job} does NOT verify: {why}"),
    }
}

async fn verify(v: VerifyArgs) -> CliResult {
    let key = agent_key(&v.agent_key)?;
    let (manifest, signature) = match &v.crate_dir {
        Some(dir) => read_crate(dir)?,
        None => {
            let m = client()?.provenance(&v.job).await?;
            (m.manifest, m.signature)
        }
    };
    verify_manifest(&key, &manifest, &signature).map_err(|e| not_verified(&v.job, e))?;
    let facts = ManifestFacts::parse(&manifest).map_err(|e| not_verified(&v.job, e))?;
    if facts.job_id != v.job {
        return Err(not_verified(
            &v.job,
            format!("the manifest is about job {}", clean(&facts.job_id)),
        ));
    }
    let mut checked = 0;
    if let Some(dir) = &v.crate_dir {
        for (name, sha, size) in facts.results() {
            check_file(&dir.join("results").join(name), sha, size)
                .map_err(|e| not_verified(&v.job, format!("results/{name}: {e}")))?;
            checked += 1;
        }
    }
    println!(
        "verified: the manifest of job {} is signed by {key}{}",
        v.job,
        if v.crate_dir.is_some() {
            format!("; {checked} result files match their SHA-256")
        } else {
            String::new()
        }
    );
    Ok(exit::OK)
}

/// The manifest bytes and the signature of an unpacked crate.
fn read_crate(dir: &Path) -> CliResult<(Vec<u8>, String)> {
    let read = |name: &str, max: u64| -> CliResult<Vec<u8>> {
        use std::io::Read;
        let path = dir.join(name);
        let f = std::fs::File::open(&path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        let mut data = Vec::new();
        f.take(max + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max {
            return Err(CliError::usage(format!("{} is too large", path.display())));
        }
        Ok(data)
    };
    let manifest = read(MANIFEST_FILE, MAX_MANIFEST_BYTES as u64)?;
    let sig: SignatureFile = serde_json::from_slice(&read(SIGNATURE_FILE, 64 * 1024)?)
        .map_err(|e| CliError::usage(format!("{SIGNATURE_FILE}: {e}")))?;
    Ok((manifest, sig.signature))
}

/// SHA-256 (hex) and size of a file, read in pieces.
fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

fn check_file(path: &Path, sha: &str, size: Option<u64>) -> Result<(), String> {
    let (got, n) = sha256_file(path).map_err(|e| e.to_string())?;
    if got != sha {
        return Err(format!("SHA-256 is {got}, the manifest says {sha}"));
    }
    if size.is_some_and(|s| s != n) {
        return Err(format!(
            "{n} bytes, the manifest says {}",
            size.unwrap_or(0)
        ));
    }
    Ok(())
}

async fn search(s: SearchArgs, format: Format) -> CliResult {
    let sha256 = match (&s.sha256, &s.file) {
        (_, Some(f)) => Some(
            sha256_file(f)
                .map_err(|e| CliError::usage(format!("--file: {e}")))?
                .0,
        ),
        (sha, None) => sha.clone(),
    };
    let mut q = ProvenanceQuery {
        sha256,
        code_sha256: s.code_sha256,
        job_type: s.job_type,
        site: s.site,
        ended_after: s.ended_after,
        ended_before: s.ended_before,
        limit: s.limit,
        cursor: None,
    };
    let c = client()?;
    let mut jobs = Vec::new();
    loop {
        let page = c.search_provenance(&q).await?;
        jobs.extend(page.jobs);
        match page.next_cursor {
            Some(cur) if s.all => q.cursor = Some(cur),
            _ => break,
        }
    }
    match format {
        Format::Json => output::json(&serde_json::json!({ "jobs": jobs }))?,
        Format::Table => {
            let rows = jobs
                .iter()
                .map(|h| {
                    let what = h
                        .matches
                        .iter()
                        .map(|m| format!("{} {}", m.role.as_str(), m.name))
                        .collect::<Vec<_>>()
                        .join(", ");
                    vec![
                        h.job_id.clone(),
                        h.site.clone(),
                        h.job_type.clone(),
                        h.status.to_string(),
                        h.ended_at.clone(),
                        what,
                    ]
                })
                .collect();
            output::table(
                &["JOB", "SITE", "JOB TYPE", "STATUS", "ENDED", "FILES"],
                rows,
            )?;
        }
    }
    Ok(exit::OK)
}
