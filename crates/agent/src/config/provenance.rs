//! The provenance settings of the config: the agent's `[provenance]` table (its signing key,
//! bounds) and a job type's `[job_types.provenance]` (what else its manifest records:
//! environment modules, a container image, the output of extra commands).
//!
//! Data and checks only: this module must never run a command or read the key.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The agent's `[provenance]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProvenanceConfig {
    /// The agent's Ed25519 key (created 0600 at first start); default
    /// `<work_dir>/.hpcsera-agent.key`.
    pub key_file: Option<PathBuf>,
    /// At most this many bytes of each recorded command output (batch-system report,
    /// `module list`, a job type's commands); the rest is cut and marked.
    pub max_report_bytes: usize,
    /// Timeout of one recorded command, in seconds.
    pub command_timeout_seconds: u64,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        ProvenanceConfig {
            key_file: None,
            max_report_bytes: 64 * 1024,
            command_timeout_seconds: 30,
        }
    }
}

/// Most commands a job type may list under `provenance.commands`.
pub const MAX_PROVENANCE_COMMANDS: usize = 16;

/// A job type's `[job_types.provenance]`: what its manifest records besides what every
/// manifest has.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobProvenanceConfig {
    /// Batch sub-jobs record `module list` when their script ends (the modules the job had
    /// loaded, not the agent's).
    pub record_modules: bool,
    /// The container image the job type runs in.
    pub container: Option<ContainerConfig>,
    /// Commands whose output goes into the manifest (argv, no shell), run by the agent on
    /// the login node when the job ends, e.g. `git rev-parse HEAD`, `spack find`.
    pub commands: Vec<ProvenanceCommand>,
}

/// A container image: its reference and how its digest is known.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    /// The reference as the job uses it, e.g. `docker://ghcr.io/org/app:1.2` or a path.
    pub image: String,
    /// The digest, when the config pins it (`sha256:<hex>`).
    #[serde(default)]
    pub digest: Option<String>,
    /// An image file (e.g. a SIF) the agent hashes with SHA-256 when the job ends.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One recorded command.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceCommand {
    /// A short name for the manifest, e.g. `app-commit`.
    pub name: String,
    /// argv, run without a shell.
    pub argv: Vec<String>,
}

impl JobProvenanceConfig {
    /// The problems of this table, as (key below `provenance`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.commands.len() > MAX_PROVENANCE_COMMANDS {
            out.push((
                "commands".to_string(),
                format!("at most {MAX_PROVENANCE_COMMANDS} commands"),
            ));
        }
        for (i, c) in self.commands.iter().enumerate() {
            if c.name.trim().is_empty() || c.name.chars().any(char::is_control) {
                out.push((
                    format!("commands[{i}].name"),
                    "must be a plain, non-empty name".into(),
                ));
            }
            if c.argv.first().is_none_or(|p| p.is_empty()) {
                out.push((format!("commands[{i}].argv"), "must name a program".into()));
            }
        }
        if let Some(c) = &self.container {
            if c.image.trim().is_empty() {
                out.push(("container.image".into(), "must not be empty".into()));
            }
            let digest_ok = |d: &str| {
                d.strip_prefix("sha256:")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            };
            if c.digest.as_deref().is_some_and(|d| !digest_ok(d)) {
                out.push((
                    "container.digest".into(),
                    "must be sha256:<64 hex digits>".into(),
                ));
            }
            if c.file.as_ref().is_some_and(|f| !f.is_absolute()) {
                out.push(("container.file".into(), "must be an absolute path".into()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::AgentConfig;

    const HEAD: &str = "server_url = \"http://s\"\ntoken_file = \"/t\"\nsite = \"s\"\nwork_dir = \"/w\"\n\
        [[job_types]]\nname = \"j\"\n[[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\nscript = \"true\"\n";

    #[test]
    fn a_job_types_provenance_table_is_checked_with_its_keys() {
        let ok = format!("{HEAD}[job_types.provenance]\nrecord_modules = true\ncommands = [{{ name = \"git\", argv = [\"git\", \"rev-parse\", \"HEAD\"] }}]\n");
        let cfg = AgentConfig::parse("a.toml", &ok).unwrap();
        assert!(cfg.job_types[0].provenance.record_modules);
        let bad = format!("{HEAD}[job_types.provenance]\ncontainer = {{ image = \"x\", digest = \"md5:1\", file = \"rel.sif\" }}\ncommands = [{{ name = \"\", argv = [] }}]\n");
        let err = AgentConfig::parse("a.toml", &bad).unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "job_types[0].provenance.commands[0].name",
                "job_types[0].provenance.commands[0].argv",
                "job_types[0].provenance.container.digest",
                "job_types[0].provenance.container.file",
            ]
        );
        let unknown = format!("{HEAD}[job_types.provenance]\nmodules = true\n");
        assert!(AgentConfig::parse("a.toml", &unknown).is_err());
        // A changed definition changes its digest.
        let other = ok.replace("rev-parse", "describe");
        assert_ne!(
            cfg.job_types[0].definition_digest(),
            AgentConfig::parse("a.toml", &other).unwrap().job_types[0].definition_digest()
        );
    }
}
