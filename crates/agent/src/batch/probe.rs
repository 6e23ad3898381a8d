//! Recording what a command says, for a job's provenance manifest: the batch system's report
//! on a batch job (`scontrol show job`, `qstat -f`, `bjobs -l`), its version, and the
//! commands a job type lists under `provenance.commands`.
//!
//! A probe runs through the one spawn helper (argv, no shell, a clean `HPCSERA_*`
//! environment), with a timeout and a bound on what is kept; it never fails the job: a
//! command that cannot run is recorded with its error. Probes are not batch-system queries of
//! the agent's cycle and are not counted by [`super::BatchAdapter::commands_spawned`].
//!
//! This module must never pass a job's parameters to a command.

use super::exec::{display_argv, run_bounded};
use serde::Serialize;
use std::time::Duration;

/// What a recorded command said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// The argv that ran.
    pub argv: Vec<String>,
    /// Its stdout, then its stderr (after a `--- stderr ---` line) when it wrote any; cut
    /// on a character boundary to the bound.
    pub output: String,
    /// The output was longer than the bound.
    pub truncated: bool,
    /// `None` when it was killed, timed out or could not start.
    pub exit_code: Option<i32>,
    /// Why it could not run or finish.
    pub error: Option<String>,
}

impl Probe {
    /// The command as a person reads it.
    pub fn command(&self) -> String {
        display_argv(&self.argv)
    }
}

/// Runs `argv` and keeps at most `max_bytes` of what it says.
pub async fn probe(argv: &[String], timeout: Duration, max_bytes: usize) -> Probe {
    let mut p = Probe {
        argv: argv.to_vec(),
        output: String::new(),
        truncated: false,
        exit_code: None,
        error: None,
    };
    match run_bounded(argv, &[], None, timeout, max_bytes as u64, || {}).await {
        Ok(out) => {
            let mut text = out.stdout;
            if !out.stderr.trim().is_empty() {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str("--- stderr ---\n");
                text.push_str(&out.stderr);
            }
            p.truncated = out.truncated || text.len() > max_bytes;
            p.output = hpcsera_api_types::cut_to_bytes(&text, max_bytes).to_string();
            p.exit_code = out.code;
        }
        Err(e) => p.error = Some(e.to_string()),
    }
    p
}

/// How long a probe may run and how much of its output is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeLimits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

impl ProbeLimits {
    /// Runs `argv` within these limits (see [`probe`]).
    pub async fn run(self, argv: &[String]) -> Probe {
        probe(argv, self.timeout, self.max_bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn output_is_bounded_and_failures_are_recorded_not_raised() {
        let big = probe(
            &argv(&["sh", "-c", "yes | head -c 100000"]),
            Duration::from_secs(10),
            1000,
        )
        .await;
        assert!(big.truncated);
        assert_eq!(big.output.len(), 1000);
        let both = probe(
            &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
            1000,
        )
        .await;
        assert_eq!(both.output, "out\n--- stderr ---\nerr\n");
        assert_eq!(both.exit_code, Some(3));
        let missing = probe(
            &argv(&["/nonexistent/program"]),
            Duration::from_secs(10),
            1000,
        )
        .await;
        assert!(missing.error.is_some() && missing.exit_code.is_none());
        let slow = probe(&argv(&["sleep", "5"]), Duration::from_millis(200), 1000).await;
        assert!(
            slow.error
                .as_deref()
                .is_some_and(|e| e.contains("did not finish")),
            "{slow:?}"
        );
    }
}
