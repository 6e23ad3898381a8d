//! hpcsera's HPC agent: the cluster side.
//!
//! The agent runs on a login node as an ordinary user. It pulls jobs from the server, runs
//! the sub-jobs that its own config defines for each job type, and reports back. This crate
//! is its batch-system side:
//!
//! * [`config`] — the TOML config file (`AgentConfig::load`), with errors that name the file,
//!   line and key, and [`config::read_token`], which refuses a token file others can read; it
//!   parses into the batch module's types ([`BatchConfig`], [`config::LoginCommand`]), never
//!   the other way round;
//! * [`env`](mod@env) — how parameters reach processes: only as `HPCSERA_PARAM_<name>` environment
//!   variables, never spliced into shell text;
//! * [`script`] — renders a batch sub-job's script into the job's work dir, with a header that
//!   records the exit code in an *exit file*;
//! * [`batch`] — one [`batch::BatchAdapter`] interface for Slurm, PBS, LSF (a generic
//!   command adapter with presets) and a local adapter; login sub-jobs
//!   ([`batch::login::run_login`]). The only module that spawns processes, all through one
//!   helper (`batch::spawn`);
//! * [`journal`] — the local journal (intent before submit, batch id after) and restart
//!   reconciliation, so a job is never submitted twice and never forgotten;
//! * [`runtime`] — the [`Agent`]: its loop, and the jobs it runs through their sub-jobs
//!   (one module per concern, see there);
//! * [`provenance`] — the agent's signing key and the signed RO-Crate manifest of every job
//!   it ends;
//! * [`unpack`] — the safe unpacker of code bundles (no absolute paths, `..`, escaping
//!   links, devices; entry and size limits; all or nothing).
//!
//! # Safety rules
//!
//! * Parameters are validated again by the agent against its own config
//!   ([`config::JobTypeConfig::validate_parameters`]); the config is the authority.
//! * Commands are argv arrays; placeholders are replaced inside single argv entries only.
//! * Parameters arrive as environment variables; scripts and commands are never built from
//!   them. A login sub-job runs through `/bin/sh -c` only when its config says `shell = …`.
//! * The rendered script stays in the job's work dir.
//!
//! # Config file
//!
//! ```toml
#![doc = include_str!("../examples/agent.toml")]
//! ```

pub mod batch;
pub mod config;
pub mod env;
pub mod journal;
mod private_file;
pub mod provenance;
pub mod runtime;
pub mod script;
pub mod unpack;

pub use batch::{
    adapter_from_config, BatchAdapter, BatchConfig, BatchError, BatchJobRef, BatchPreset,
    BatchState, SubmitRequest,
};
pub use config::{read_token, AgentConfig, ConfigError, JobTypeConfig, SubJobConfig};
pub use journal::Journal;
pub use runtime::{Agent, AgentError};
