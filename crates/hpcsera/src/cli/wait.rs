//! Waiting for a job (the events long-poll, resumed by `seq`, never busy polling) and
//! following its output (by offset: every byte once, in order, across reconnects).

use super::{exit, CliError, CliResult};
use hpcsera_client::{Client, ClientError, EventKind, Job, JobStatus, Operation, OutputStream};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long one events request waits on the server.
const LONG_POLL_SECONDS: u32 = 30;
/// Most bytes asked for in one output read.
const OUTPUT_CHUNK: u64 = 1 << 20;
/// Give up after this many transport failures in a row (each after the SDK's own retries).
const MAX_TRANSIENT_FAILURES: u32 = 20;

/// Parses `90`, `90s`, `15m`, `2h`, `1h30m`, `1d` (`hpcsera_api_types::duration`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    hpcsera_api_types::duration::parse_secs(s).map(Duration::from_secs)
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The exit code that stands for a job's end (see [`exit`]).
pub fn job_exit_code(job: &Job) -> u8 {
    let own = job
        .exit_code
        .and_then(|c| u8::try_from(c).ok())
        .filter(|c| *c != 0);
    match job.status {
        JobStatus::Completed => own.unwrap_or(exit::OK),
        JobStatus::Failed => own.unwrap_or(exit::FAILED),
        JobStatus::Cancelled => exit::CANCELLED,
        JobStatus::Lost => exit::LOST,
        _ => exit::ERROR,
    }
}

#[derive(Clone, Copy)]
pub struct WaitOptions {
    pub timeout: Option<Duration>,
    pub follow: bool,
    pub cancel_on_interrupt: bool,
}

pub enum WaitEnd {
    Ended(Box<Job>),
    TimedOut,
    Interrupted,
}

/// Status reporting on stderr: a redrawn line on a terminal, plain lines otherwise.
struct Progress {
    id: String,
    started: Instant,
    live: bool,
    status: Option<JobStatus>,
    drawn: bool,
}

impl Progress {
    fn line(&self) -> String {
        format!(
            "job {}: {} ({})",
            self.id,
            self.status.map(|s| s.as_str()).unwrap_or("?"),
            human(self.started.elapsed())
        )
    }
    fn status(&mut self, s: JobStatus) {
        if self.status == Some(s) {
            return;
        }
        self.status = Some(s);
        if self.live {
            self.draw();
        } else {
            eprintln!("{}", self.line());
        }
    }
    fn note(&mut self, text: &str) {
        self.clear();
        eprintln!("job {}: {}", self.id, super::output::clean(text));
        if self.live {
            self.draw();
        }
    }
    fn draw(&mut self) {
        if self.live {
            eprint!("\r\x1b[2K{}", self.line());
            let _ = std::io::stderr().flush();
            self.drawn = true;
        }
    }
    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = false;
        }
    }
}

/// Whether a read may be tried again as it was: transport trouble (also a reply cut off
/// mid-body, which the SDK reports as undecodable). Reads change nothing on the server.
fn retry_read(e: &ClientError) -> bool {
    e.is_transient() || matches!(e, ClientError::Decode(_))
}

/// Sleeps a little longer after each transport failure; errors out after too many.
async fn transient_pause(failures: &mut u32, e: ClientError) -> CliResult<()> {
    *failures += 1;
    if *failures > MAX_TRANSIENT_FAILURES {
        return Err(e.into());
    }
    tracing::debug!(error = %e, failures, "transport error; trying again");
    tokio::time::sleep(Duration::from_millis(500 * u64::from((*failures).min(10)))).await;
    Ok(())
}

/// Waits until the job is terminal, following its events with the long-poll.
async fn watch(client: &Client, id: &str, progress: &mut Progress) -> CliResult<Job> {
    let history = client.events(id, 0).await?;
    let mut after = history.last().map(|e| e.seq).unwrap_or(0);
    let mut job = client.get_job(id).await?;
    progress.status(job.status);
    let mut failures = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !job.status.is_terminal() {
        let mut req = Box::pin(client.events_wait(id, after, LONG_POLL_SECONDS));
        let events = loop {
            tokio::select! {
                r = &mut req => break r,
                _ = tick.tick() => progress.draw(),
            }
        };
        let events = match events {
            Ok(ev) => {
                failures = 0;
                ev
            }
            Err(e) if retry_read(&e) => {
                transient_pause(&mut failures, e).await?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for e in events {
            after = after.max(e.seq);
            match e.kind {
                EventKind::Deleted => return Err(CliError::other(format!("job {id} was deleted"))),
                EventKind::OperationRequested
                | EventKind::OperationDone
                | EventKind::OperationFailed => {
                    if let Some(m) = &e.message {
                        progress.note(&format!("{}: {m}", e.kind.as_str().replace('_', " ")));
                    }
                }
                _ => {}
            }
            if let Some(to) = e.to_status {
                progress.status(to);
                if to.is_terminal() {
                    job = client.get_job(id).await?;
                }
            }
        }
    }
    Ok(job)
}

/// Copies a job's output streams from offset 0: its stdout to our stdout, its stderr to our
/// stderr (or to stdout with `to_stdout`). With `follow`, until the job has ended and
/// How long one read of a follower waits on the server for new output.
const OUTPUT_WAIT: u32 = 20;

/// everything was read (`complete`); else until what is there now was read.
pub async fn stream_output(
    client: &Client,
    id: &str,
    streams: &[OutputStream],
    follow: bool,
    to_stdout: bool,
) -> CliResult<()> {
    let mut offsets = vec![0u64; streams.len()];
    let mut done = vec![false; streams.len()];
    let mut warned_truncated = false;
    let mut failures = 0;
    // After a round that found nothing, the first stream still open is read with the
    // server's long-poll: it answers when either stream grows or the job's status changes.
    let mut wait_next = false;
    loop {
        let mut got = false;
        let first_open = done.iter().position(|d| !d);
        for (i, stream) in streams.iter().enumerate() {
            if done[i] {
                continue;
            }
            let wait = if follow && wait_next && Some(i) == first_open {
                OUTPUT_WAIT
            } else {
                0
            };
            let chunk = match client
                .read_output_wait(id, *stream, offsets[i], OUTPUT_CHUNK, wait)
                .await
            {
                Ok(c) => {
                    failures = 0;
                    c
                }
                Err(e) if retry_read(&e) => {
                    // Retry from the same offset: nothing is lost or repeated.
                    transient_pause(&mut failures, e).await?;
                    got = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if !chunk.data.is_empty() {
                got = true;
                let w = if to_stdout || *stream == OutputStream::Stdout {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&chunk.data).and_then(|_| o.flush())
                } else {
                    std::io::stderr().lock().write_all(&chunk.data)
                };
                w.map_err(|e| CliError::other(format!("cannot write the job's output: {e}")))?;
            }
            if chunk.truncated && !warned_truncated {
                warned_truncated = true;
                eprintln!(
                    "note: the server kept only part of job {id}'s {} (output limit)",
                    stream.as_str()
                );
            }
            offsets[i] = chunk.next_offset.max(offsets[i]);
            if chunk.complete || (!follow && chunk.data.is_empty()) {
                done[i] = true;
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(());
        }
        wait_next = !got;
    }
}

/// Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that comes right after is never the default's (death).
pub(super) fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = wait(int) => {}, _ = wait(term) => {} }
    }
}

/// Asks on the terminal; true for "y" or "yes" (Ctrl-C is no).
pub(crate) async fn ask_yes_no(question: String) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    // A plain thread, not spawn_blocking: a read left pending must not hold up the exit.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    tokio::select! {
        r = rx => matches!(r, Ok(Ok(l)) if matches!(l.trim().to_ascii_lowercase().as_str(), "y" | "yes")),
        _ = tokio::signal::ctrl_c() => { eprintln!(); false }
    }
}

/// Waits for the job to end (following its output with `follow`), honouring the timeout and
/// Ctrl-C.
pub async fn wait(client: &Client, id: &str, opts: WaitOptions) -> CliResult<WaitEnd> {
    let interrupt = interrupted();
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let mut progress = Progress {
        id: id.to_string(),
        started: Instant::now(),
        live: tty && !opts.follow,
        status: None,
        drawn: false,
    };
    let work = async {
        if opts.follow {
            let streams = [OutputStream::Stdout, OutputStream::Stderr];
            let (job, ()) = tokio::try_join!(
                watch(client, id, &mut progress),
                stream_output(client, id, &streams, true, false)
            )?;
            Ok::<_, CliError>(job)
        } else {
            watch(client, id, &mut progress).await
        }
    };
    let timed = async {
        match opts.timeout {
            Some(t) => tokio::time::timeout(t, work).await.ok(),
            None => Some(work.await),
        }
    };
    let end = tokio::select! {
        r = timed => match r {
            Some(job) => WaitEnd::Ended(Box::new(job?)),
            None => WaitEnd::TimedOut,
        },
        _ = interrupt => WaitEnd::Interrupted,
    };
    progress.clear();
    if let WaitEnd::Interrupted = end {
        eprintln!();
        let cancel = if opts.cancel_on_interrupt {
            true
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            ask_yes_no(format!("Cancel job {id}?")).await
        } else {
            false
        };
        if cancel {
            let job = client.operation(id, Operation::Cancel).await?;
            eprintln!("job {id}: cancel requested (status {})", job.status);
        } else {
            eprintln!("stopped waiting; job {id} goes on");
        }
    }
    Ok(end)
}

/// Turns the end of a wait into an exit code, printing a summary on stderr.
pub fn finish(end: &WaitEnd, id: &str, timeout: Option<Duration>) -> u8 {
    match end {
        WaitEnd::Ended(job) => {
            let code = job_exit_code(job);
            let mut line = format!("job {id}: {}", job.status);
            if let Some(c) = job.exit_code {
                line.push_str(&format!(", exit code {c}"));
            }
            if let Some(m) = &job.message {
                line.push_str(&format!(" ({m})"));
            }
            eprintln!("{}", super::output::clean(&line.replace(['\n', '\r'], " ")));
            code
        }
        WaitEnd::TimedOut => {
            eprintln!(
                "error: timed out after {} waiting for job {id}; the job goes on",
                human(timeout.unwrap_or_default())
            );
            exit::TIMED_OUT
        }
        WaitEnd::Interrupted => exit::INTERRUPTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10m5").is_err());
    }
}
