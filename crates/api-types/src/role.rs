//! The eight orthogonal token roles (names exactly as in the original system).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// A token role. Roles are orthogonal and freely combined.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, PartialOrd, Ord,
)]
pub enum Role {
    /// Read a job's status, output and results.
    #[serde(rename = "GET_JobStatus")]
    GetJobStatus,
    /// Report a job's status, output and results (agent).
    #[serde(rename = "UPDATE_JobStatus")]
    UpdateJobStatus,
    /// Claim and read jobs for execution (agent).
    #[serde(rename = "GET_Job")]
    GetJob,
    /// Upload a code bundle.
    #[serde(rename = "POST_Code")]
    PostCode,
    /// Download an approved code bundle (agent).
    #[serde(rename = "GET_Code")]
    GetCode,
    /// Submit a parameterised job.
    #[serde(rename = "POST_Job")]
    PostJob,
    /// Change a job that is not yet running; request an operation.
    #[serde(rename = "UPDATE_Job")]
    UpdateJob,
    /// Delete a job (cancelling it first if it runs).
    #[serde(rename = "DELETE_Job")]
    DeleteJob,
}

impl Role {
    /// All roles, in the order of the design table.
    pub const ALL: [Role; 8] = [
        Role::GetJobStatus,
        Role::UpdateJobStatus,
        Role::GetJob,
        Role::PostCode,
        Role::GetCode,
        Role::PostJob,
        Role::UpdateJob,
        Role::DeleteJob,
    ];

    /// The wire name, e.g. `GET_JobStatus`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::GetJobStatus => "GET_JobStatus",
            Role::UpdateJobStatus => "UPDATE_JobStatus",
            Role::GetJob => "GET_Job",
            Role::PostCode => "POST_Code",
            Role::GetCode => "GET_Code",
            Role::PostJob => "POST_Job",
            Role::UpdateJob => "UPDATE_Job",
            Role::DeleteJob => "DELETE_Job",
        }
    }

    /// What the role allows, in a sentence for people (the design's role table).
    pub fn description(self) -> &'static str {
        match self {
            Role::GetJobStatus => "Read a job's status, output and results.",
            Role::UpdateJobStatus => "Report a job's status, output and results (agent).",
            Role::GetJob => "Claim and read jobs for execution (agent).",
            Role::PostCode => "Upload a code bundle.",
            Role::GetCode => "Download an approved code bundle (agent).",
            Role::PostJob => "Submit a parameterised job.",
            Role::UpdateJob => {
                "Change a job that is not yet running; request an operation (cancel, hold, release)."
            }
            Role::DeleteJob => "Delete a job (cancelling it first if it runs).",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; roles are {}",
                    Role::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// A set of roles, stored as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u32);

impl RoleSet {
    pub const EMPTY: RoleSet = RoleSet(0);

    pub fn all() -> Self {
        Role::ALL.into_iter().collect()
    }
    pub fn from_bits(bits: u32) -> Self {
        RoleSet(bits & 0xff)
    }
    pub fn bits(self) -> u32 {
        self.0
    }
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
    pub fn insert(&mut self, role: Role) {
        self.0 |= role.bit();
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }
    pub fn to_vec(self) -> Vec<Role> {
        self.iter().collect()
    }
    /// Parses a comma-separated list such as `GET_JobStatus,POST_Job`.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let mut set = RoleSet::EMPTY;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(part.parse()?);
        }
        Ok(set)
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut s = RoleSet::EMPTY;
        for r in iter {
            s.insert(r);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert!("get_jobstatus".parse::<Role>().is_err());
    }

    #[test]
    fn set_operations() {
        let s = RoleSet::parse_list("POST_Job, GET_JobStatus").unwrap();
        assert!(s.contains(Role::PostJob));
        assert!(s.contains(Role::GetJobStatus));
        assert!(!s.contains(Role::DeleteJob));
        assert_eq!(RoleSet::from_bits(s.bits()), s);
        assert_eq!(RoleSet::all().to_vec().len(), 8);
        assert!(RoleSet::parse_list("POST_Job,ADMIN").is_err());
    }
}
