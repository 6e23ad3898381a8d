//! Types shared by every part of hpcsera: the wire format (DTOs in camelCase), the eight
//! roles, the job state machine, job-type parameter validation and
//! the resources a job asks of the batch system.
//!
//! This crate has no I/O. The server, the agent and the client all depend on it, so a rule
//! written here (a legal transition, a parameter check) is the same rule everywhere.

pub mod bounds;
pub mod codefiles;
pub mod dto;
pub mod duration;
pub mod errors;
pub mod jobtype;
pub mod kinds;
pub mod oauth;
pub mod provenance;
pub mod resources;
pub mod role;
pub mod signed;
pub mod status;
pub mod sweep;
pub mod tokens;

pub use bounds::*;
pub use codefiles::{CodeFile, CodeFileList};
pub use dto::*;
pub use errors::{ErrorBody, ErrorDetail};
pub use jobtype::*;
pub use kinds::{Actor, DeliveryStatus, EventKind, SubJobStatus};
pub use resources::{
    GrantedResources, ResourceKind, ResourceName, ResourceRule, ResourceRules, ResourceValue,
    Resources,
};
pub use role::{Role, RoleSet};
pub use signed::{SignedApproval, UserKey, UserKeyList};
pub use status::{JobStatus, Operation};
pub use sweep::{
    NewSweep, Sweep, SweepCounts, SweepList, SweepOperationResult, MAX_SWEEP_MEMBERS,
    MAX_SWEEP_PROBLEMS,
};
pub use tokens::{TokenCreated, TokenRequest};

/// Base path of the REST API.
pub const API_BASE: &str = "/api/v1";

/// Prefix of every token secret, so that leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "hpcs_";
