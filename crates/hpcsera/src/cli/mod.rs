//! The client commands of `hpcsera`: `login`, `logout`, `profiles`, `whoami`, `sites`,
//! `job-types`, `job …`, `sweep …` and `provenance …`. They talk to the server only through the SDK
//! (`hpcsera-client`), with the server and token of the chosen profile (`--profile`,
//! `config.rs`).
//!
//! Every command returns an exit code or a [`CliError`], which becomes one line on stderr
//! (`error: …`) and a non-zero exit code; see [`exit`] for the codes.

mod approve;
pub mod code;
mod config;
mod job;
mod login;
mod output;
mod params;
mod provenance;
mod sweep;
mod sweep_input;
mod wait;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hpcsera_client::{Client, ClientError};
use std::process::ExitCode;

/// Exit codes of the client commands (documented in README.md, section "CLI").
pub mod exit {
    /// Success; with `--wait`: the job completed (or its own exit code was 0).
    pub const OK: u8 = 0;
    /// The server could not be reached, refused the token, failed, or anything else went wrong.
    pub const ERROR: u8 = 1;
    /// The command line or its input was refused (usage, unknown site/job type/job, a bad
    /// parameter).
    pub const USAGE: u8 = 2;
    /// With `--wait`: the job failed without an exit code of its own (e.g. a login step or
    /// the batch system failed it).
    pub const FAILED: u8 = 70;
    /// With `--wait`: the job was cancelled.
    pub const CANCELLED: u8 = 71;
    /// With `--wait`: the job was lost (its agent never came back).
    pub const LOST: u8 = 72;
    /// With `--wait --timeout`: the job had not ended when the time was up (it goes on).
    pub const TIMED_OUT: u8 = 73;
    /// `provenance verify`: the manifest does not verify (signature, job, or a file's digest).
    pub const NOT_VERIFIED: u8 = 74;
    /// Ctrl-C (or SIGTERM) while waiting.
    pub const INTERRUPTED: u8 = 130;
}

/// Output format of the client commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned, for people.
    Table,
    /// Stable JSON for scripts (the API's objects unchanged).
    Json,
}

/// The flags of every command, accepted before or after the subcommand (`hpcsera --output
/// json job list` and `hpcsera job list --output json` are the same): the output format, the
/// profile and the CA file. Set once per process by [`set_global`] before a command runs.
#[derive(Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Output format of commands that print data: `table` for people, `json` for scripts.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "HPCSERA_OUTPUT"
    )]
    pub output: Format,
    /// The profile of the config file to use: its server URL and token (default: `default`;
    /// see `hpcsera profiles`).
    #[arg(long, global = true, env = "HPCSERA_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's: the internal CA that
    /// signed the server's certificate (the agent: `ca_file` in its config wins).
    #[arg(long, global = true, env = "HPCSERA_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<std::path::PathBuf>,
}

static GLOBAL: std::sync::OnceLock<GlobalArgs> = std::sync::OnceLock::new();

/// Sets the global flags for this process (the first call wins).
pub fn set_global(args: GlobalArgs) {
    let _ = GLOBAL.set(args);
}

/// The global flags (defaults before [`set_global`]).
pub fn global() -> GlobalArgs {
    GLOBAL.get().cloned().unwrap_or(GlobalArgs {
        output: Format::Table,
        profile: None,
        ca_file: None,
    })
}

/// The chosen output format.
pub fn format() -> Format {
    global().output
}

/// Whether `--output json` was chosen.
pub fn json_output() -> bool {
    format() == Format::Json
}

/// Prints `v` as pretty JSON (for the commands whose errors are `anyhow`: `code`, `admin`).
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    output::json(v).map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// How the SDK connects: the CA file of `--ca-file`, and `request` as the request timeout.
pub fn http_options(request: std::time::Duration) -> hpcsera_client::HttpOptions {
    hpcsera_client::HttpOptions {
        connect_timeout: std::time::Duration::from_secs(10),
        request_timeout: request,
        ca_file: global().ca_file,
    }
}

/// The client subcommands, flattened into the binary's command list.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Store a server URL and a token in a profile of the user's config file (checked with
    /// the server first); with --device, get the token by approving the login in the web UI.
    Login(login::LoginArgs),
    /// Remove the profile's stored URL and token.
    Logout,
    /// List the profiles (servers and whether a token is stored) of the config file.
    Profiles,
    /// Show who the token belongs to, its project and roles.
    Whoami,
    /// List the sites (HPC systems) and their job types.
    Sites,
    /// Show the job types of a site with their parameters.
    JobTypes(JobTypesArgs),
    /// Submit, watch and manage jobs.
    Job(job::JobArgs),
    /// Sweeps: many jobs of one job type in one request (a grid or parameter sets).
    Sweep(sweep::SweepArgs),
    /// A job's signed provenance (RO-Crate): show, download, verify with the agent's key,
    /// and find which job made or used a file.
    Provenance(provenance::ProvenanceArgs),
}

#[derive(Args)]
pub struct JobTypesArgs {
    /// The site, e.g. `local`.
    site: String,
}

/// An error of a client command: one line for stderr and an exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }
    pub fn other(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::ERROR,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(e.to_string())
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api {
                status,
                code,
                message,
                fields,
            } => {
                let mut text = message;
                for f in &fields {
                    if !text.contains(&f.problem) {
                        text.push_str(&format!("; {}: {}", f.field, f.problem));
                    }
                }
                match status {
                    401 => CliError::other(format!(
                        "the server refused the token: {text} (run `hpcsera login`, or set HPCSERA_TOKEN)"
                    )),
                    403 => CliError::other(format!("not allowed: {text}")),
                    400 | 404 | 413 | 422 => CliError::usage(text),
                    409 => CliError::other(format!("conflict: {text}")),
                    s if s >= 500 => CliError::other(format!("server error ({s} {code}): {text}")),
                    s => CliError::other(format!("{s} {code}: {text}")),
                }
            }
            ClientError::Connect { url, source } => {
                let mut cause: &dyn std::error::Error = &source;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                let base = url::Url::parse(&url)
                    .map(|u| format!("{}://{}", u.scheme(), u.authority()))
                    .unwrap_or(url);
                CliError::other(format!("cannot reach the server at {base}: {cause}"))
            }
            ClientError::Certificate { url, problem, .. } => {
                let base = url::Url::parse(&url)
                    .map(|u| format!("{}://{}", u.scheme(), u.authority()))
                    .unwrap_or(url);
                CliError::other(format!("{problem} (server {base})"))
            }
            ClientError::Decode(m) => {
                CliError::other(format!("unexpected reply from the server: {m}"))
            }
            ClientError::Config(m) => CliError::usage(m),
        }
    }
}

pub type CliResult<T = u8> = Result<T, CliError>;

/// Runs a client command; prints an error as one line on stderr.
pub async fn run(cmd: ClientCommand) -> ExitCode {
    let result = match cmd {
        ClientCommand::Login(a) => login::login(a).await,
        ClientCommand::Logout => login::logout(),
        ClientCommand::Profiles => login::profiles(format()),
        ClientCommand::Whoami => whoami(format()).await,
        ClientCommand::Sites => sites(format()).await,
        ClientCommand::JobTypes(a) => job_types(&a.site, format()).await,
        ClientCommand::Job(a) => job::run(a).await,
        ClientCommand::Provenance(a) => provenance::run(a).await,
        ClientCommand::Sweep(a) => sweep::run(a).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let line = e.message.replace(['\n', '\r'], " ");
            eprintln!("error: {}", output::clean(&line));
            ExitCode::from(e.code)
        }
    }
}

/// The SDK client for the configured server and token.
pub(crate) fn client() -> CliResult<Client> {
    let (url, token) = config::resolve()?;
    Client::with_options(
        &url,
        &token,
        &http_options(std::time::Duration::from_secs(90)),
    )
    .map_err(CliError::from)
}

async fn whoami(format: Format) -> CliResult {
    let c = client()?;
    let me = c.whoami().await?;
    match format {
        Format::Json => output::json(&me)?,
        Format::Table => {
            let roles: Vec<String> = me
                .roles
                .iter()
                .map(|r| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            output::pairs(&[
                ("user", me.user.clone()),
                ("project", me.project.clone()),
                ("roles", roles.join(", ")),
                ("site", me.site.clone().unwrap_or_else(|| "(any)".into())),
                ("token", format!("{} ({})", me.name, me.token_id)),
                (
                    "expires",
                    me.expires_at.clone().unwrap_or_else(|| "never".into()),
                ),
                ("server", c.base_url().trim_end_matches('/').to_string()),
            ])?;
        }
    }
    Ok(exit::OK)
}

async fn sites(format: Format) -> CliResult {
    let c = client()?;
    let sites = c.sites().await?;
    match format {
        Format::Json => output::json(&serde_json::json!({ "sites": sites }))?,
        Format::Table => {
            let rows = sites
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.last_seen_at.clone().unwrap_or_else(|| "never".into()),
                        s.agent_version.clone().unwrap_or_default(),
                        s.job_types.join(", "),
                    ]
                })
                .collect();
            output::table(&["SITE", "LAST SEEN", "AGENT", "JOB TYPES"], rows)?;
        }
    }
    Ok(exit::OK)
}

/// The job types of `site`, with an error that lists the known sites when it is unknown.
pub(crate) async fn site_job_types(
    c: &Client,
    site: &str,
) -> CliResult<Vec<hpcsera_client::JobTypeSpec>> {
    match c.job_types(site).await {
        Ok(t) => Ok(t),
        Err(e) if e.status() == Some(404) => {
            let known = c
                .sites()
                .await
                .map(|s| s.into_iter().map(|s| s.name).collect::<Vec<_>>())
                .unwrap_or_default();
            Err(CliError::usage(if known.is_empty() {
                format!("unknown site {site:?}; the server knows no sites yet")
            } else {
                format!("unknown site {site:?}; sites are: {}", known.join(", "))
            }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn job_types(site: &str, format: Format) -> CliResult {
    let c = client()?;
    let types = site_job_types(&c, site).await?;
    match format {
        Format::Json => {
            output::json(&serde_json::json!({ "site": site, "jobTypes": types }))?;
        }
        Format::Table => output::job_types(&types)?,
    }
    Ok(exit::OK)
}

/// Parses `30d`, `12h`, `45m`, `90s` or an RFC 3339 time into an absolute time (Unix ms).
pub(crate) fn parse_expiry(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Some(t) = hpcsera_store::parse_rfc3339_ms(s) {
        if t <= now {
            anyhow::bail!("--expires {s:?} is in the past");
        }
        return Ok(t);
    }
    let ms = parse_age("--expires", s)?;
    if ms <= 0 {
        anyhow::bail!(
            "--expires {s:?}: expected a duration like 30d, 12h, 45m or an RFC 3339 time"
        );
    }
    now.checked_add(ms).context("--expires is too far away")
}

/// Parses an age such as `30d`, `12h`, `45m`, `90s` (`hpcsera_api_types::duration`) into
/// milliseconds; `flag` names the option in errors.
pub(crate) fn parse_age(flag: &str, s: &str) -> anyhow::Result<i64> {
    let secs =
        hpcsera_api_types::duration::parse_secs(s).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000))
        .with_context(|| format!("{flag} is too long"))
}
