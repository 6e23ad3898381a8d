//! Sweeps: many jobs of one job type in one request (`POST /sweeps`), as a list of parameter
//! sets or a grid (the cartesian product of value lists), and what a sweep answers with.
//!
//! The expansion of a sweep into its members ([`NewSweep::members`]) and the mapping of a
//! member's parameter problem back to where the client wrote the value
//! ([`member_problem_field`]) live here, so that the server and the clients expand the same
//! way. No I/O.

use crate::dto::Job;
use crate::errors::FieldError;
use crate::resources::Resources;
use crate::status::{JobStatus, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Most members of one sweep.
pub const MAX_SWEEP_MEMBERS: usize = 10_000;

/// Most problems a refused sweep lists (its 422 counts the rest in `moreFields`).
pub const MAX_SWEEP_PROBLEMS: usize = 20;

/// Body of `POST /sweeps`: a job type, base parameters (and resources), and either
/// `parameterSets` or `grid`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSweep {
    /// The site that should run the members.
    pub site: String,
    /// A job type the site publishes.
    pub job_type: String,
    /// Parameters every member gets; a member's own values override them.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Resources every member asks for (PSI/J names, checked against the job type's rules
    /// as for `POST /job`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub resources: Map<String, Value>,
    /// One member per entry: its parameters over the base `parameters`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub parameter_sets: Option<Vec<Map<String, Value>>>,
    /// One member per combination of values (cartesian product); names in sorted order,
    /// the last name varies fastest.
    #[schema(value_type = Option<Object>)]
    pub grid: Option<BTreeMap<String, Vec<Value>>>,
    /// Free-form JSON kept with the sweep (at most 16 KiB).
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    /// URL the server calls on every status change of every member.
    pub callback_url: Option<String>,
}

/// One member of a sweep before validation: its index and the parameters it names
/// (the base parameters with its own over them).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    pub index: u32,
    pub parameters: Map<String, Value>,
    /// For a grid member: the position of its value in each axis, by name.
    pub grid_pos: Vec<(String, usize)>,
}

impl NewSweep {
    /// How many members the sweep has (without building them); `None` when it overflows.
    pub fn member_count(&self) -> Option<usize> {
        match (&self.parameter_sets, &self.grid) {
            (Some(sets), None) => Some(sets.len()),
            (None, Some(grid)) => grid
                .values()
                .try_fold(1usize, |n, vs| n.checked_mul(vs.len())),
            _ => None,
        }
    }

    /// The members, in index order, or the problems of the sweep's shape (neither or both
    /// of `parameterSets` and `grid`, no members, more than [`MAX_SWEEP_MEMBERS`], an empty
    /// axis, a member value that names a base parameter's key twice is fine: it overrides).
    pub fn members(&self) -> Result<Vec<MemberSpec>, Vec<FieldError>> {
        let count = match (&self.parameter_sets, &self.grid) {
            (None, None) | (Some(_), Some(_)) => {
                return Err(vec![FieldError::new(
                    "parameterSets",
                    "give exactly one of parameterSets and grid",
                )])
            }
            _ => self.member_count(),
        };
        let field = if self.grid.is_some() {
            "grid"
        } else {
            "parameterSets"
        };
        match count {
            Some(0) => {
                return Err(vec![FieldError::new(field, "the sweep has no members")]);
            }
            Some(n) if n <= MAX_SWEEP_MEMBERS => {}
            _ => {
                return Err(vec![FieldError::new(
                    field,
                    format!("a sweep has at most {MAX_SWEEP_MEMBERS} members"),
                )])
            }
        }
        if let Some(sets) = &self.parameter_sets {
            return Ok(sets
                .iter()
                .enumerate()
                .map(|(i, set)| {
                    let mut p = self.parameters.clone();
                    p.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
                    MemberSpec {
                        index: i as u32,
                        parameters: p,
                        grid_pos: Vec::new(),
                    }
                })
                .collect());
        }
        Ok(self.grid_members())
    }

    /// The cartesian product of the grid (checked non-empty and bounded by the caller).
    fn grid_members(&self) -> Vec<MemberSpec> {
        let axes: Vec<(&String, &Vec<Value>)> = self.grid.iter().flatten().collect();
        let total = self.member_count().unwrap_or(0);
        let mut out = Vec::with_capacity(total);
        for i in 0..total {
            let mut p = self.parameters.clone();
            let mut pos = Vec::with_capacity(axes.len());
            let mut rest = i;
            // The last axis varies fastest.
            for (name, values) in axes.iter().rev() {
                let j = rest % values.len();
                rest /= values.len();
                p.insert((*name).clone(), values[j].clone());
                pos.push(((*name).clone(), j));
            }
            pos.reverse();
            out.push(MemberSpec {
                index: i as u32,
                parameters: p,
                grid_pos: pos,
            });
        }
        out
    }
}

/// Where the client wrote the value that a member's problem `field` (`parameters.NAME`)
/// is about: `grid.NAME[j]`, `parameterSets[i].NAME`, or `parameters.NAME` (the base),
/// else `members[i].FIELD`.
pub fn member_problem_field(sweep: &NewSweep, m: &MemberSpec, field: &str) -> String {
    if let Some(name) = field.strip_prefix("parameters.") {
        if let Some((_, j)) = m.grid_pos.iter().find(|(n, _)| n == name) {
            return format!("grid.{name}[{j}]");
        }
        let in_set = sweep
            .parameter_sets
            .as_ref()
            .and_then(|s| s.get(m.index as usize))
            .is_some_and(|set| set.contains_key(name));
        if in_set {
            return format!("parameterSets[{}].{name}", m.index);
        }
        if sweep.parameters.contains_key(name) {
            return field.to_string();
        }
    }
    format!("members[{}].{field}", m.index)
}

/// How many members are in each status (every status is listed, zeros too).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SweepCounts {
    /// Members by status name.
    pub by_status: BTreeMap<String, u64>,
    /// Members that have ended (completed, failed, cancelled, lost).
    pub ended: u64,
    /// Members that ended other than `completed`.
    pub unsuccessful: u64,
}

impl SweepCounts {
    /// Counts from `(status, n)` pairs; statuses not given are zero.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (JobStatus, u64)>) -> SweepCounts {
        let mut by_status: BTreeMap<String, u64> = JobStatus::ALL
            .into_iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let (mut ended, mut unsuccessful) = (0, 0);
        for (s, n) in pairs {
            *by_status.entry(s.as_str().to_string()).or_default() += n;
            if s.is_terminal() {
                ended += n;
                if s != JobStatus::Completed {
                    unsuccessful += n;
                }
            }
        }
        SweepCounts {
            by_status,
            ended,
            unsuccessful,
        }
    }

    pub fn get(&self, s: JobStatus) -> u64 {
        self.by_status.get(s.as_str()).copied().unwrap_or(0)
    }
}

/// A sweep: what was asked and how far its members are.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Sweep {
    pub id: String,
    pub project: String,
    pub site: String,
    pub job_type: String,
    /// The user whose token submitted the sweep.
    pub owner: String,
    /// The base parameters (as sent).
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// What every member asks of the batch system, as validated (defaults and fixed values
    /// filled in).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    #[schema(value_type = Object)]
    pub metadata: Option<Value>,
    pub callback_url: Option<String>,
    /// How many members the sweep was created with.
    pub members: u64,
    /// Members by status (members deleted one by one are no longer counted).
    pub counts: SweepCounts,
    pub created_at: String,
}

/// One page of sweeps (newest first).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SweepList {
    pub sweeps: Vec<Sweep>,
    pub next_cursor: Option<String>,
}

/// What an operation on a whole sweep did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SweepOperationResult {
    pub operation: Operation,
    /// Members on which it took effect at once (no agent held them).
    pub done: u64,
    /// Members whose agent will carry it out (recorded as their pending operation).
    pub handed_to_agent: u64,
    /// Members it did not apply to (ended, or a cancel already pending).
    pub skipped: u64,
    pub sweep: Sweep,
}

/// Body of `GET /sweeps/{id}/jobs`: a page of members in index order.
pub type SweepJobs = crate::dto::JobList;

/// A member's place in its sweep, as a job shows it.
pub fn member_of(job: &Job) -> Option<(&str, u32)> {
    Some((job.sweep.as_deref()?, job.sweep_index?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sweep(v: Value) -> NewSweep {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn grid_is_a_cartesian_product_last_name_fastest() {
        let s = sweep(json!({"site": "s", "jobType": "t", "parameters": {"x": 1},
            "grid": {"steps": [100, 200, 400], "mode": ["fast", "exact"]}}));
        let m = s.members().unwrap();
        assert_eq!(m.len(), 6);
        // Names sorted: mode, steps; steps varies fastest.
        assert_eq!(
            m[0].parameters,
            *json!({"x": 1, "mode": "fast", "steps": 100})
                .as_object()
                .unwrap()
        );
        assert_eq!(m[1].parameters["steps"], json!(200));
        assert_eq!(m[3].parameters["mode"], json!("exact"));
        assert_eq!(m[3].parameters["steps"], json!(100));
        assert_eq!(m[5].index, 5);
        assert_eq!(
            member_problem_field(&s, &m[4], "parameters.steps"),
            "grid.steps[1]"
        );
        assert_eq!(
            member_problem_field(&s, &m[4], "parameters.x"),
            "parameters.x"
        );
        assert_eq!(
            member_problem_field(&s, &m[4], "parameters.y"),
            "members[4].parameters.y"
        );
    }

    #[test]
    fn sets_override_the_base() {
        let s = sweep(
            json!({"site": "s", "jobType": "t", "parameters": {"x": 1, "y": 2},
            "parameterSets": [{"x": 5}, {}]}),
        );
        let m = s.members().unwrap();
        assert_eq!(
            m[0].parameters,
            *json!({"x": 5, "y": 2}).as_object().unwrap()
        );
        assert_eq!(
            m[1].parameters,
            *json!({"x": 1, "y": 2}).as_object().unwrap()
        );
        assert_eq!(
            member_problem_field(&s, &m[0], "parameters.x"),
            "parameterSets[0].x"
        );
        assert_eq!(
            member_problem_field(&s, &m[1], "parameters.x"),
            "parameters.x"
        );
    }

    #[test]
    fn shapes_are_checked() {
        let bad = [
            json!({"site": "s", "jobType": "t"}),
            json!({"site": "s", "jobType": "t", "grid": {}, "parameterSets": []}),
            json!({"site": "s", "jobType": "t", "parameterSets": []}),
            json!({"site": "s", "jobType": "t", "grid": {"a": []}}),
            json!({"site": "s", "jobType": "t", "grid": {"a": vec![0; 101], "b": vec![0; 100]}}),
        ];
        for b in bad {
            assert!(sweep(b.clone()).members().is_err(), "{b}");
        }
        let max = sweep(
            json!({"site": "s", "jobType": "t", "grid": {"a": vec![0; 100], "b": vec![0; 100]}}),
        );
        assert_eq!(max.members().unwrap().len(), MAX_SWEEP_MEMBERS);
    }

    #[test]
    fn counts_list_every_status() {
        let c = SweepCounts::from_pairs([
            (JobStatus::Completed, 3),
            (JobStatus::Failed, 1),
            (JobStatus::Running, 2),
        ]);
        assert_eq!(c.by_status.len(), JobStatus::ALL.len());
        assert_eq!(
            (c.ended, c.unsuccessful, c.get(JobStatus::Queued)),
            (4, 1, 0)
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["byStatus"]["completed"], json!(3));
    }
}
