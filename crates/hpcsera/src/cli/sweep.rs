//! `hpcsera sweep …`: submit (with `--wait` and a progress line on stderr), get, list, jobs,
//! wait, cancel, hold, release, delete, results (every member's result files, one directory
//! per index).
//!
//! Waiting follows the sweep's events with the long poll (never busy polling) and reads the
//! counts again when something happened. The exit code after waiting is 0 when every member
//! completed, 70 when any did not (failed, cancelled or lost), 73 on `--timeout`, 130 on
//! Ctrl-C.

use super::sweep_input;
use super::wait::{human, parse_duration};
use super::{client, exit, format, output, params, site_job_types, CliError, CliResult, Format};
use clap::{Args, Subcommand};
use hpcsera_api_types::is_valid_result_name;
use hpcsera_client::{Client, JobStatus, Operation, Sweep};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    cmd: SweepCommand,
}

#[derive(Subcommand)]
enum SweepCommand {
    /// Submit a sweep: many jobs of one job type, as a grid or a list of parameter sets.
    Submit(SubmitArgs),
    /// Show a sweep and its members' counts by status.
    Get { id: String },
    /// List sweeps, newest first.
    List {
        /// All pages, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// List a sweep's members in index order.
    Jobs {
        id: String,
        /// Only members with these statuses (comma-separated or repeated).
        #[arg(long, value_delimiter = ',')]
        status: Vec<JobStatus>,
    },
    /// Wait until every member has ended.
    Wait {
        id: String,
        #[command(flatten)]
        w: WaitArgs,
    },
    /// Cancel every member that has not ended.
    Cancel { id: String },
    /// Hold every member that has not started (or hold it in the batch queue).
    Hold { id: String },
    /// Release every held member.
    Release { id: String },
    /// Delete a sweep and its members (cancelling those that run).
    Delete { id: String },
    /// Download every member's result files into DIR/<index>/.
    Results {
        id: String,
        #[arg(long = "to", short = 'o', value_name = "DIR")]
        to: PathBuf,
    },
}

#[derive(Args)]
struct SubmitArgs {
    site: String,
    job_type: String,
    /// One axis of the grid: a parameter and its values (repeatable); one member per
    /// combination.
    #[arg(long, value_name = "NAME=V1,V2,…")]
    grid: Vec<String>,
    /// A base parameter every member gets (repeatable).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Resources every member asks for, e.g. node_count=2,duration=1h.
    #[arg(long, value_name = "NAME=VALUE,…")]
    resources: Vec<String>,
    /// A sweep file: YAML or JSON (parameters, parameterSets or grid, resources, metadata;
    /// or a list of parameter sets), or CSV (a header of parameter names, a member a row).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// Makes the submission safe to retry: the same key and request give the same sweep.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Wait until every member has ended, with a progress line on stderr.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    w: WaitArgs,
}

#[derive(Args, Clone)]
struct WaitArgs {
    /// Stop waiting after this long (e.g. 90s, 15m, 2h); exit code 73.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// On Ctrl-C (or SIGTERM) cancel the sweep instead of only stopping to wait.
    #[arg(long)]
    cancel_on_interrupt: bool,
}

pub async fn run(a: SweepArgs) -> CliResult {
    let format = format();
    let c = client()?;
    match a.cmd {
        SweepCommand::Submit(s) => submit(&c, s, format).await,
        SweepCommand::Get { id } => {
            let sweep = c.get_sweep(&id).await?;
            show(&sweep, format)?;
            Ok(exit::OK)
        }
        SweepCommand::List { all } => list(&c, all, format).await,
        SweepCommand::Jobs { id, status } => {
            let mut jobs = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = c
                    .sweep_jobs(&id, &status, Some(1000), cursor.as_deref())
                    .await?;
                jobs.extend(page.jobs);
                match page.next_cursor {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            match format {
                Format::Json => output::json(&serde_json::json!({ "jobs": jobs }))?,
                Format::Table => {
                    let rows = jobs
                        .iter()
                        .map(|j| {
                            vec![
                                j.sweep_index.map(|i| i.to_string()).unwrap_or_default(),
                                j.id.clone(),
                                j.status.to_string(),
                                j.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                                serde_json::Value::Object(j.parameters.clone()).to_string(),
                            ]
                        })
                        .collect();
                    output::table(&["INDEX", "JOB", "STATUS", "EXIT", "PARAMETERS"], rows)?
                }
            }
            Ok(exit::OK)
        }
        SweepCommand::Wait { id, w } => {
            c.get_sweep(&id).await?;
            wait(&c, &id, &w, format).await
        }
        SweepCommand::Cancel { id } => operation(&c, &id, Operation::Cancel, format).await,
        SweepCommand::Hold { id } => operation(&c, &id, Operation::Hold, format).await,
        SweepCommand::Release { id } => operation(&c, &id, Operation::Release, format).await,
        SweepCommand::Delete { id } => {
            let pending = c.delete_sweep(&id).await?;
            match format {
                Format::Json => output::json(&serde_json::json!({
                    "id": id, "deleted": true, "pending": pending
                }))?,
                Format::Table if pending => output::out(&format!(
                    "sweep {id} deleted; running members are cancelled and removed when they end\n"
                ))?,
                Format::Table => output::out(&format!("sweep {id} deleted\n"))?,
            }
            Ok(exit::OK)
        }
        SweepCommand::Results { id, to } => results(&c, &id, &to, format).await,
    }
}

async fn submit(c: &Client, s: SubmitArgs, format: Format) -> CliResult {
    let types = site_job_types(c, &s.site).await?;
    let spec = types.iter().find(|t| t.name == s.job_type).ok_or_else(|| {
        CliError::usage(format!(
            "site {:?} has no job type {:?}",
            s.site, s.job_type
        ))
    })?;
    let file = match &s.from_file {
        Some(p) => sweep_input::read_file(p, spec)?,
        None => Default::default(),
    };
    let base = file.parameters.clone();
    let parameters = params::build(c, &s.site, spec, base, &s.params).await?;
    let grid = sweep_input::grid(spec, &s.grid)?;
    let resources = params::resources(&s.resources)?;
    let body = sweep_input::body(&s.site, &s.job_type, file, parameters, grid, resources);
    let sweep = c.submit_sweep(&body, s.idempotency_key.as_deref()).await?;
    if !s.wait {
        match format {
            Format::Json => output::json(&sweep)?,
            Format::Table => output::out(&format!("{}\n", sweep.id))?,
        }
        return Ok(exit::OK);
    }
    eprintln!(
        "sweep {} submitted: {} members of {} at {}",
        sweep.id, sweep.members, sweep.job_type, sweep.site
    );
    wait(c, &sweep.id, &s.w, format).await
}

/// The progress line: done, running, failed, waiting, time.
fn progress_line(s: &Sweep, started: Instant) -> String {
    let n = |st: JobStatus| s.counts.get(st);
    let running = n(JobStatus::Running) + n(JobStatus::Staging) + n(JobStatus::Completing);
    let waiting = s.members.saturating_sub(s.counts.ended + running);
    format!(
        "sweep {}: {}/{} done, {} running, {} failed, {} waiting ({})",
        s.id,
        n(JobStatus::Completed),
        s.members,
        running,
        s.counts.unsuccessful,
        waiting,
        human(started.elapsed())
    )
}

/// Follows the sweep's events (long poll) until every member has ended, redrawing the
/// progress line when the counts change.
async fn follow(c: &Client, id: &str, live: bool) -> CliResult<Sweep> {
    let started = Instant::now();
    let mut after = 0;
    let mut last = String::new();
    loop {
        let sweep = c.get_sweep(id).await?;
        let line = progress_line(&sweep, started);
        let changed = line.split(" (").next() != last.split(" (").next();
        if live {
            eprint!("\r\x1b[2K{}", output::clean(&line));
            let _ = std::io::stderr().flush();
        } else if changed {
            eprintln!("{}", output::clean(&line));
        }
        last = line;
        let total = sweep.counts.by_status.values().sum::<u64>();
        if sweep.counts.ended >= total {
            if live {
                eprintln!();
            }
            return Ok(sweep);
        }
        let events = c.sweep_events(id, after, 20).await?;
        if let Some(e) = events.last() {
            after = e.seq;
        }
    }
}

async fn wait(c: &Client, id: &str, w: &WaitArgs, format: Format) -> CliResult {
    let live = std::io::stderr().is_terminal();
    let work = follow(c, id, live);
    let timed = async {
        match w.timeout {
            Some(t) => tokio::time::timeout(t, work).await.ok(),
            None => Some(work.await),
        }
    };
    let interrupt = super::wait::interrupted();
    let sweep = tokio::select! {
        r = timed => match r {
            Some(s) => s?,
            None => {
                eprintln!("\nerror: timed out after {} waiting for sweep {id}; it goes on",
                    human(w.timeout.unwrap_or_default()));
                return Ok(exit::TIMED_OUT);
            }
        },
        _ = interrupt => {
            eprintln!();
            if w.cancel_on_interrupt {
                let r = c.sweep_operation(id, Operation::Cancel).await?;
                eprintln!("sweep {id}: cancel requested ({} at once, {} by their agent)", r.done, r.handed_to_agent);
            } else {
                eprintln!("stopped waiting; sweep {id} goes on");
            }
            return Ok(exit::INTERRUPTED);
        }
    };
    if format == Format::Json {
        output::json(&sweep)?;
    }
    Ok(if sweep.counts.unsuccessful > 0 {
        eprintln!(
            "sweep {id}: {} members did not complete",
            sweep.counts.unsuccessful
        );
        exit::FAILED
    } else {
        exit::OK
    })
}

fn show(s: &Sweep, format: Format) -> CliResult<()> {
    match format {
        Format::Json => output::json(s),
        Format::Table => {
            let counts: Vec<String> = s
                .counts
                .by_status
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            output::pairs(&[
                ("id", s.id.clone()),
                ("site", s.site.clone()),
                ("job type", s.job_type.clone()),
                ("owner", s.owner.clone()),
                ("members", s.members.to_string()),
                ("counts", counts.join(", ")),
                ("created", s.created_at.clone()),
            ])
        }
    }
}

async fn list(c: &Client, all: bool, format: Format) -> CliResult {
    let mut sweeps = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = c.list_sweeps(Some(100), cursor.as_deref()).await?;
        sweeps.extend(page.sweeps);
        match page.next_cursor {
            Some(n) if all => cursor = Some(n),
            _ => break,
        }
    }
    match format {
        Format::Json => output::json(&serde_json::json!({ "sweeps": sweeps }))?,
        Format::Table => {
            let rows = sweeps
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.site.clone(),
                        s.job_type.clone(),
                        s.members.to_string(),
                        s.counts.get(JobStatus::Completed).to_string(),
                        s.counts.unsuccessful.to_string(),
                        s.created_at.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "SWEEP", "SITE", "TYPE", "MEMBERS", "DONE", "FAILED", "CREATED",
                ],
                rows,
            )?
        }
    }
    Ok(exit::OK)
}

async fn operation(c: &Client, id: &str, op: Operation, format: Format) -> CliResult {
    let r = c.sweep_operation(id, op).await?;
    match format {
        Format::Json => output::json(&r)?,
        Format::Table => output::out(&format!(
            "sweep {id}: {}: {} at once, {} handed to their agent, {} skipped\n",
            op.as_str(),
            r.done,
            r.handed_to_agent,
            r.skipped
        ))?,
    }
    Ok(exit::OK)
}

/// Every member's result files into `<dir>/<index>/<name>`.
async fn results(c: &Client, id: &str, dir: &std::path::Path, format: Format) -> CliResult {
    let members = c.all_sweep_jobs(id).await?;
    let mut written = Vec::new();
    for m in &members {
        let Some(index) = m.sweep_index else { continue };
        let files = c.list_results(&m.id).await?;
        for f in &files {
            if !is_valid_result_name(&f.name) {
                return Err(CliError::other(format!(
                    "the server named a result file {:?}, which is not a safe path",
                    f.name
                )));
            }
            let data = c.get_result(&m.id, &f.name).await?;
            let path = dir.join(index.to_string()).join(&f.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &data)
                .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
            written.push(
                serde_json::json!({"index": index, "jobId": m.id, "name": f.name,
                "path": path.display().to_string()}),
            );
        }
    }
    match format {
        Format::Json => output::json(&serde_json::json!({ "files": written }))?,
        Format::Table => eprintln!(
            "{} files of {} members written to {}",
            written.len(),
            members.len(),
            output::clean(&dir.display().to_string())
        ),
    }
    Ok(exit::OK)
}
