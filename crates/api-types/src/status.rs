//! The job state machine (DESIGN §3). This is the one place that decides which status
//! changes are legal; the store refuses anything this module refuses.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// Status of a job.
///
/// ```text
/// queued ──claim──▶ dispatched ──▶ staging ──▶ submitted ──▶ running ──▶ completing ──▶ completed
///    ├─ awaiting_approval ─▶ queued
///    └────────────── any non-terminal ──▶ failed | cancelled | lost
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    AwaitingApproval,
    Dispatched,
    Staging,
    Submitted,
    Running,
    Completing,
    Completed,
    Failed,
    Cancelled,
    Lost,
}

impl JobStatus {
    pub const ALL: [JobStatus; 11] = [
        JobStatus::Queued,
        JobStatus::AwaitingApproval,
        JobStatus::Dispatched,
        JobStatus::Staging,
        JobStatus::Submitted,
        JobStatus::Running,
        JobStatus::Completing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::AwaitingApproval => "awaiting_approval",
            JobStatus::Dispatched => "dispatched",
            JobStatus::Staging => "staging",
            JobStatus::Submitted => "submitted",
            JobStatus::Running => "running",
            JobStatus::Completing => "completing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Lost => "lost",
        }
    }

    /// `completed`, `failed`, `cancelled` and `lost` are final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled | JobStatus::Lost
        )
    }

    /// Whether an agent holds the job (it was claimed and has not ended).
    pub fn is_with_agent(self) -> bool {
        matches!(
            self,
            JobStatus::Dispatched
                | JobStatus::Staging
                | JobStatus::Submitted
                | JobStatus::Running
                | JobStatus::Completing
        )
    }

    /// Position on the main path; jobs only move forward along it (steps may be skipped:
    /// a job type without login sub-jobs never stages, a short batch job may finish
    /// between two polls and never be seen running).
    fn rank(self) -> Option<u8> {
        Some(match self {
            JobStatus::Dispatched => 1,
            JobStatus::Staging => 2,
            JobStatus::Submitted => 3,
            JobStatus::Running => 4,
            JobStatus::Completing => 5,
            JobStatus::Completed => 6,
            _ => return None,
        })
    }

    /// Whether `self → to` is a legal transition. Staying in the same non-terminal state is
    /// not a transition (it is a progress report) and is not covered here.
    pub fn can_transition_to(self, to: JobStatus) -> bool {
        use JobStatus::*;
        if self.is_terminal() || self == to {
            return false;
        }
        match (self, to) {
            (_, Failed | Cancelled) => true,
            // `lost` is only decided for jobs an agent held.
            (from, Lost) => from.is_with_agent(),
            (Queued, AwaitingApproval | Dispatched) => true,
            (AwaitingApproval, Queued) => true,
            // Re-offer: the lease ran out on a job that provably never reached the batch system.
            (Dispatched, Queued) => true,
            (from, to) => match (from.rank(), to.rank()) {
                (Some(a), Some(b)) => b > a,
                _ => false,
            },
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; statuses are {}",
                    JobStatus::ALL.map(JobStatus::as_str).join(", ")
                )
            })
    }
}

/// An operation a client requests on a job (`PUT /job/updateByOperation/{jobId}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Cancel,
    Hold,
    Release,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Cancel => "cancel",
            Operation::Hold => "hold",
            Operation::Release => "release",
        }
    }
}

impl FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cancel" => Ok(Operation::Cancel),
            "hold" => Ok(Operation::Hold),
            "release" => Ok(Operation::Release),
            _ => Err(format!(
                "unknown operation {s:?}; operations are cancel, hold, release"
            )),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in [Completed, Failed, Cancelled, Lost] {
            for to in JobStatus::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn main_path_moves_forward_only() {
        assert!(Queued.can_transition_to(Dispatched));
        assert!(Dispatched.can_transition_to(Staging));
        assert!(Dispatched.can_transition_to(Submitted));
        assert!(Submitted.can_transition_to(Completed));
        assert!(Running.can_transition_to(Completing));
        assert!(!Running.can_transition_to(Submitted));
        assert!(!Completing.can_transition_to(Running));
        assert!(!Queued.can_transition_to(Running));
        assert!(!Queued.can_transition_to(Completed));
        assert!(!Queued.can_transition_to(Lost));
        assert!(Running.can_transition_to(Lost));
        assert!(AwaitingApproval.can_transition_to(Queued));
        assert!(!AwaitingApproval.can_transition_to(Dispatched));
        assert!(Dispatched.can_transition_to(Queued));
        assert!(!Running.can_transition_to(Queued));
        for s in JobStatus::ALL {
            assert!(!s.can_transition_to(s));
        }
    }

    #[test]
    fn any_live_state_can_fail_or_be_cancelled() {
        for s in JobStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
            assert!(s.can_transition_to(Failed));
            assert!(s.can_transition_to(Cancelled));
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(s.as_str().parse::<JobStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
