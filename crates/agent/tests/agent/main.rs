//! The agent crate's integration tests, in one binary (one link instead of one per file):
//! each module is one area, against the real thing where it runs here (real processes, a
//! real server, Slurm where `HPCSERA_TEST_SLURM=1`).

mod adapters;
mod common;
mod config;
mod journal;
mod local;
mod login;
mod resources;
mod runtime;
mod slurm;
mod test_server;
mod unpack;
