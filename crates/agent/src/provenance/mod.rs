//! Signed provenance: the agent's own signing key ([`key`]) and the RO-Crate manifest it
//! writes for every job it ends ([`manifest`]).
//!
//! When a job ends, the agent (see `runtime::provenance`) uploads the result files, gathers
//! what the manifest says (the job type and the digest of its definition, parameters, code
//! bundles with uploader and approver, result files with the SHA-256 the server confirmed,
//! sub-job times and exit codes, what the batch system reports, `module list`, the container
//! image, the job type's extra commands), builds the manifest, signs its exact bytes with the
//! agent's key, uploads manifest and signature (`PUT /job/{id}/provenance`) and only then
//! reports the job's end: the server never holds an end without the agent having had the
//! chance to sign what happened.
//!
//! This module does no I/O except reading and creating the key file.

mod graph;
pub mod key;
pub mod manifest;

/// The bytes of a job's manifest (pretty JSON, what the agent signs): the facts are
/// `manifest`'s, the RO-Crate entities `graph`'s, which reads the facts (never the reverse).
pub use graph::build;
pub use key::{KeyError, Signer};
