//! `hpcsera job …`: submit, get, list, wait, logs, results, cancel, hold, release, delete.

use super::wait::{self, WaitEnd, WaitOptions};
use super::{client, exit, output, params, site_job_types, CliError, CliResult, Format};
use clap::{Args, Subcommand};
use hpcsera_api_types::is_valid_result_name;
use hpcsera_client::{Client, JobQuery, JobStatus, NewJob, Operation, OutputStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct JobArgs {
    #[command(subcommand)]
    cmd: JobCommand,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Submit a job: a job type of a site with parameters.
    Submit(SubmitArgs),
    /// Show a job.
    Get { id: String },
    /// List jobs, newest first.
    List(ListArgs),
    /// Wait until a job ends; the exit code stands for how it ended.
    Wait {
        id: String,
        #[command(flatten)]
        w: WaitArgs,
    },
    /// Print a job's output (stdout, or stderr with --stderr).
    Logs {
        id: String,
        /// Keep printing output as it is produced, until the job ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// The job's stderr instead of its stdout.
        #[arg(long)]
        stderr: bool,
    },
    /// List a job's result files, or download one (NAME) or all (-o DIR).
    Results {
        id: String,
        /// A result file to download (to stdout unless --to is given).
        name: Option<String>,
        /// Where to write: a file for NAME, a directory for all files (or NAME inside it).
        #[arg(long = "to", short = 'o', value_name = "DIR|FILE")]
        to: Option<PathBuf>,
    },
    /// Cancel a job (in the batch system too).
    Cancel { id: String },
    /// Hold a job: it is not started (or is held in the batch queue) until released.
    Hold { id: String },
    /// Release a held job.
    Release { id: String },
    /// Delete a job (cancelling it first when it runs).
    Delete { id: String },
}

#[derive(Args)]
struct SubmitArgs {
    /// The site, e.g. `local`.
    site: String,
    /// The job type, e.g. `hello` (see `hpcsera job-types SITE`).
    job_type: String,
    /// A parameter, converted by its declared type (repeatable). `-p name=@path` on a
    /// parameter of type code pushes the directory or tar.gz as a code bundle first;
    /// `-p @FILE` reads a parameter file (YAML, or JSON for `.json`) in its place.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE|@FILE")]
    params: Vec<String>,
    /// A parameter file: a YAML (or, for `.json`, JSON) mapping of parameter values; -p
    /// values override it.
    #[arg(long = "params-file", alias = "param-file", value_name = "FILE")]
    param_file: Option<PathBuf>,
    /// What to ask of the batch system, by PSI/J name, within the job type's bounds
    /// (repeatable, comma-separated): `--resources node_count=2,duration=1h,memory=4G`.
    #[arg(long, value_name = "NAME=VALUE,…")]
    resources: Vec<String>,
    /// Makes the submission safe to retry: the same key and request give the same job.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// JSON to keep with the job (returned verbatim).
    #[arg(long, value_name = "JSON")]
    metadata: Option<String>,
    /// A URL (on the server's allow-list) that receives every status change, signed.
    #[arg(long, value_name = "URL")]
    callback_url: Option<String>,
    /// Wait until the job ends; the exit code is the job's.
    #[arg(long)]
    wait: bool,
    /// Print the job's stdout (and stderr on stderr) as it is produced; implies --wait.
    #[arg(long, short = 'f')]
    follow: bool,
    #[command(flatten)]
    w: WaitArgs,
}

#[derive(Args, Clone)]
struct WaitArgs {
    /// Stop waiting after this long (e.g. 90s, 15m, 2h); exit code 73.
    #[arg(long, value_name = "DURATION", value_parser = wait::parse_duration)]
    timeout: Option<Duration>,
    /// On Ctrl-C (or SIGTERM) cancel the job instead of asking.
    #[arg(long)]
    cancel_on_interrupt: bool,
}

#[derive(Args)]
struct ListArgs {
    /// Only jobs with these statuses (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    status: Vec<JobStatus>,
    #[arg(long)]
    site: Option<String>,
    /// Only jobs of this job type.
    #[arg(long = "type")]
    job_type: Option<String>,
    /// Jobs per page.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// All pages, not only the first.
    #[arg(long)]
    all: bool,
}

pub async fn run(a: JobArgs) -> CliResult {
    let format = super::format();
    let c = client()?;
    match a.cmd {
        JobCommand::Submit(s) => submit(&c, s, format).await,
        JobCommand::Get { id } => {
            let job = c.get_job(&id).await?;
            match format {
                Format::Json => output::json(&job)?,
                Format::Table => output::job(&job)?,
            }
            Ok(exit::OK)
        }
        JobCommand::List(l) => list(&c, l, format).await,
        JobCommand::Wait { id, w } => {
            c.get_job(&id).await?;
            wait_and_report(&c, &id, &w, false, format).await
        }
        JobCommand::Logs { id, follow, stderr } => {
            let stream = if stderr {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            c.get_job(&id).await?;
            wait::stream_output(&c, &id, &[stream], follow, true).await?;
            Ok(exit::OK)
        }
        JobCommand::Results { id, name, to } => results(&c, &id, name, to, format).await,
        JobCommand::Cancel { id } => operation(&c, &id, Operation::Cancel, format).await,
        JobCommand::Hold { id } => operation(&c, &id, Operation::Hold, format).await,
        JobCommand::Release { id } => operation(&c, &id, Operation::Release, format).await,
        JobCommand::Delete { id } => {
            let pending = c.delete_job(&id).await?;
            match format {
                Format::Json => output::json(&serde_json::json!({
                    "id": id, "deleted": true, "pending": pending
                }))?,
                Format::Table if pending => output::out(&format!(
                    "job {id} runs: cancel requested, it is removed when it ends\n"
                ))?,
                Format::Table => output::out(&format!("job {id} deleted\n"))?,
            }
            Ok(exit::OK)
        }
    }
}

async fn submit(c: &Client, s: SubmitArgs, format: Format) -> CliResult {
    let types = site_job_types(c, &s.site).await?;
    let Some(spec) = types.iter().find(|t| t.name == s.job_type) else {
        let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
        return Err(CliError::usage(format!(
            "site {:?} has no job type {:?}; its job types are: {}",
            s.site,
            s.job_type,
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let base = match &s.param_file {
        Some(p) => params::read_file(p)?,
        None => Default::default(),
    };
    let resources = params::resources(&s.resources)?;
    let parameters = params::build(c, &s.site, spec, base, &s.params).await?;
    let metadata = match &s.metadata {
        Some(m) => Some(
            serde_json::from_str(m)
                .map_err(|e| CliError::usage(format!("--metadata is not valid JSON: {e}")))?,
        ),
        None => None,
    };
    let job = c
        .submit(
            &NewJob {
                site: s.site.clone(),
                job_type: s.job_type.clone(),
                parameters,
                resources,
                metadata,
                callback_url: s.callback_url.clone(),
            },
            s.idempotency_key.as_deref(),
        )
        .await?;
    if !(s.wait || s.follow) {
        match format {
            Format::Json => output::json(&job)?,
            Format::Table => output::out(&format!("{}\n", job.id))?,
        }
        return Ok(exit::OK);
    }
    eprintln!(
        "job {} submitted ({} at {})",
        job.id, job.job_type, job.site
    );
    wait_and_report(c, &job.id, &s.w, s.follow, format).await
}

async fn wait_and_report(
    c: &Client,
    id: &str,
    w: &WaitArgs,
    follow: bool,
    format: Format,
) -> CliResult {
    let end = wait::wait(
        c,
        id,
        WaitOptions {
            timeout: w.timeout,
            follow,
            cancel_on_interrupt: w.cancel_on_interrupt,
        },
    )
    .await?;
    if let (WaitEnd::Ended(job), Format::Json, false) = (&end, format, follow) {
        output::json(job)?;
    }
    Ok(wait::finish(&end, id, w.timeout))
}

async fn list(c: &Client, l: ListArgs, format: Format) -> CliResult {
    let mut q = JobQuery {
        statuses: l.status,
        site: l.site,
        job_type: l.job_type,
        limit: Some(l.limit),
        cursor: None,
    };
    let mut jobs = Vec::new();
    let next = loop {
        let page = c.list_jobs(&q).await?;
        jobs.extend(page.jobs);
        match page.next_cursor {
            Some(cur) if l.all => q.cursor = Some(cur),
            other => break other,
        }
    };
    match format {
        Format::Json => {
            let mut v = serde_json::json!({ "jobs": jobs });
            if let Some(n) = next {
                v["nextCursor"] = serde_json::Value::String(n);
            }
            output::json(&v)?
        }
        Format::Table => output::table(&output::JOB_HEADERS, output::job_rows(&jobs))?,
    }
    Ok(exit::OK)
}

async fn operation(c: &Client, id: &str, op: Operation, format: Format) -> CliResult {
    let job = c.operation(id, op).await?;
    match format {
        Format::Json => output::json(&job)?,
        Format::Table => {
            let state = if job.pending_operation.is_some() {
                "requested: the agent carries it out"
            } else {
                "done"
            };
            output::out(&format!(
                "job {id}: {} {state} (status {}{})\n",
                op.as_str(),
                job.status,
                if job.held { ", held" } else { "" }
            ))?
        }
    }
    Ok(exit::OK)
}

/// Writes `data` to `path`, creating its directory.
fn write_file(path: &Path, data: &[u8]) -> CliResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, data)
        .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))
}

async fn results(
    c: &Client,
    id: &str,
    name: Option<String>,
    to: Option<PathBuf>,
    format: Format,
) -> CliResult {
    match (name, to) {
        (None, None) => {
            let files = c.list_results(id).await?;
            match format {
                Format::Json => output::json(&serde_json::json!({ "results": files }))?,
                Format::Table => output::results(&files)?,
            }
        }
        (None, Some(dir)) => {
            let files = c.list_results(id).await?;
            for f in &files {
                // Names come from the server: only relative, clean paths are written.
                if !is_valid_result_name(&f.name) {
                    return Err(CliError::other(format!(
                        "the server named a result file {:?}, which is not a safe path",
                        f.name
                    )));
                }
                let data = c.get_result(id, &f.name).await?;
                write_file(&dir.join(&f.name), &data)?;
                eprintln!(
                    "{}",
                    output::clean(&dir.join(&f.name).display().to_string())
                );
            }
            if format == Format::Json {
                output::json(&serde_json::json!({ "results": files }))?;
            }
        }
        (Some(name), to) => {
            if !is_valid_result_name(&name) {
                return Err(CliError::usage(format!(
                    "{name:?} is not a result file name"
                )));
            }
            let data = c.get_result(id, &name).await?;
            match to {
                None => {
                    use std::io::Write;
                    let mut o = std::io::stdout().lock();
                    o.write_all(&data)
                        .and_then(|_| o.flush())
                        .map_err(|e| CliError::other(format!("cannot write to stdout: {e}")))?;
                }
                Some(p) => {
                    let target = if p.is_dir() { p.join(&name) } else { p };
                    write_file(&target, &data)?;
                    eprintln!("{}", output::clean(&target.display().to_string()));
                }
            }
        }
    }
    Ok(exit::OK)
}
