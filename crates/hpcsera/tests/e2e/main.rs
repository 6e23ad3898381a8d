//! The binary crate's end-to-end tests, in one binary (one link instead of five): the real
//! `hpcsera` binary, a real server, the real agent, on the local adapter or on Slurm with
//! `HPCSERA_TEST_ADAPTER=slurm`.
//!
//! | module | what |
//! |---|---|
//! | `e2e` | the agent end to end |
//! | `cli` | the client commands and `examples/` |
//! | `code_e2e` | code bundles: push, approval, running pushed code |
//! | `approval_e2e` | signed approvals: the agent with `require_signature` and OpenSSH's tools |
//! | `provenance_e2e` | signed RO-Crate manifests: validated with roc-validator and rocrate, verified, tampered with, searched |
//! | `resources_e2e` | resources: `--resources`, the rules, `scontrol show job`, granted resources |
//! | `readme` | the README's command blocks, as written |
//! | `connections` | the server under many connections |
//! | `durability` | acknowledged submissions survive kill -9 of the server |
//! | `conventions` | completions, man pages, `--output json` everywhere, YAML parameter files, `--profile` first |
//! | `deploy` | `deploy/`: systemd units verified, example agent configs, cron lines run |
//! | `tls` | the server's own TLS with a private CA: CLI, agent, SIGHUP reload, proxies |
//! | `python` | the spec checks (openapi-python-client, openapi-generator, schemathesis) and the Python SDK's pytest suite |
//!
//! `scripts/test.sh` runs `e2e`, `cli`, `code_e2e`, `approval_e2e`, `provenance_e2e` and
//! `resources_e2e` once more on Slurm by their module paths (`-- e2e:: cli:: code_e2e::
//! approval_e2e:: provenance_e2e:: resources_e2e::`).

mod common;
/// The agent's tests' server set-up (tokens, a server on port 0), shared with them.
#[path = "../../../agent/tests/agent/test_server.rs"]
mod test_server;

mod approval_e2e;
mod cli;
mod code_e2e;
mod connections;
mod conventions;
mod deploy;
mod durability;
mod e2e;
mod provenance_e2e;
mod python;
mod readme;
mod resources_e2e;
mod shape;
mod sweep_e2e;
mod tls;
