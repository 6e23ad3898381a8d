//! What a job asks of the batch system, by the names of PSI/J's JobSpec (`ResourceSpecV1`
//! and `JobAttributes`): the typed [`Resources`] value, the rules a job type declares for
//! them ([`ResourceRules`]), the one validator that both the server (at submission) and the
//! agent (before rendering) use, and what the batch system granted
//! ([`GrantedResources`]).
//!
//! Parse, don't validate: a [`Resources`] value only comes out of [`Resources::parse`] (or
//! its deserialisation, which is the same parse), so every value in it is well-formed — a
//! count, a size in bytes, a time in seconds, a name of safe characters. Whether a job type
//! allows it is [`ResourceRules::apply`]. Rendering to scheduler options is the agent's.
//!
//! No I/O.

mod rules;
pub mod units;

pub use rules::{ResourceRule, ResourceRules};

use crate::errors::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use utoipa::ToSchema;

/// The largest count (nodes, processes, cores) accepted.
pub const MAX_COUNT: u64 = 10_000_000;
/// The longest queue, account or reservation name.
pub const MAX_RESOURCE_NAME_LEN: usize = 64;

/// A resource, named as in PSI/J.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceName {
    NodeCount,
    ProcessCount,
    ProcessesPerNode,
    CpuCoresPerProcess,
    GpuCoresPerProcess,
    /// Bytes, for the whole job (PSI/J: "the total amount of memory requested for the job").
    Memory,
    /// Seconds of wall-clock time.
    Duration,
    QueueName,
    Account,
    ReservationId,
}

/// What kind of value a resource takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Count,
    Bytes,
    Seconds,
    Name,
}

impl ResourceName {
    pub const ALL: [ResourceName; 10] = [
        ResourceName::NodeCount,
        ResourceName::ProcessCount,
        ResourceName::ProcessesPerNode,
        ResourceName::CpuCoresPerProcess,
        ResourceName::GpuCoresPerProcess,
        ResourceName::Memory,
        ResourceName::Duration,
        ResourceName::QueueName,
        ResourceName::Account,
        ResourceName::ReservationId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::NodeCount => "node_count",
            ResourceName::ProcessCount => "process_count",
            ResourceName::ProcessesPerNode => "processes_per_node",
            ResourceName::CpuCoresPerProcess => "cpu_cores_per_process",
            ResourceName::GpuCoresPerProcess => "gpu_cores_per_process",
            ResourceName::Memory => "memory",
            ResourceName::Duration => "duration",
            ResourceName::QueueName => "queue_name",
            ResourceName::Account => "account",
            ResourceName::ReservationId => "reservation_id",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceName> {
        ResourceName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    pub fn kind(self) -> ResourceKind {
        match self {
            ResourceName::Memory => ResourceKind::Bytes,
            ResourceName::Duration => ResourceKind::Seconds,
            ResourceName::QueueName | ResourceName::Account | ResourceName::ReservationId => {
                ResourceKind::Name
            }
            _ => ResourceKind::Count,
        }
    }

    /// The smallest value of a numeric resource: 0 GPU cores is "none", every other count,
    /// size and time is at least 1 (Slurm reads `--time=0` as no limit).
    fn floor(self) -> u64 {
        match self {
            ResourceName::GpuCoresPerProcess => 0,
            _ => 1,
        }
    }

    /// Parses one value of this resource: a JSON integer for counts; an integer (bytes,
    /// seconds) or a string with units for memory and duration; a string of letters,
    /// digits, `_`, `.`, `+`, `-` (not first) for names.
    pub fn parse_value(self, v: &Value) -> Result<ResourceValue, String> {
        let n = match (self.kind(), v) {
            (ResourceKind::Name, Value::String(s)) => return check_name(s),
            (ResourceKind::Name, _) => return Err(format!("must be a string, not {}", kind_of(v))),
            (_, Value::Number(n)) => match n.as_u64() {
                Some(n) => n,
                None if n.is_i64() => return Err("must not be negative".into()),
                None => return Err("must be a whole number".into()),
            },
            (ResourceKind::Bytes, Value::String(s)) => units::parse_memory(s)?,
            (ResourceKind::Seconds, Value::String(s)) => units::parse_duration(s)?,
            (ResourceKind::Count, _) => {
                return Err(format!("must be a whole number, not {}", kind_of(v)))
            }
            _ => {
                return Err(format!(
                    "must be a whole number or a string with units, not {}",
                    kind_of(v)
                ))
            }
        };
        let max = match self.kind() {
            ResourceKind::Bytes => units::MAX_MEMORY_BYTES,
            ResourceKind::Seconds => units::MAX_DURATION_SECONDS,
            _ => MAX_COUNT,
        };
        if n < self.floor() {
            return Err(format!("must be at least {}", self.floor()));
        }
        if n > max {
            return Err(format!("must be at most {}", self.show(max)));
        }
        Ok(ResourceValue::Number(n))
    }

    /// A value of this resource for people: `4G`, `1h30m`, `2`, `debug`.
    pub fn show_value(self, v: &ResourceValue) -> String {
        match v {
            ResourceValue::Number(n) => self.show(*n),
            ResourceValue::Text(s) => s.clone(),
        }
    }

    fn show(self, n: u64) -> String {
        match self.kind() {
            ResourceKind::Bytes => units::format_memory(n),
            ResourceKind::Seconds => units::format_duration(n),
            _ => n.to_string(),
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_name(s: &str) -> Result<ResourceValue, String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_RESOURCE_NAME_LEN
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if ok {
        Ok(ResourceValue::Text(s.to_string()))
    } else {
        Err(format!(
            "must be 1 to {MAX_RESOURCE_NAME_LEN} letters, digits, '_', '.', '+' or '-' \
             (not '-' or '.' first)"
        ))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One resource's value in canonical form: a number (count, bytes, seconds) or a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ResourceValue {
    Number(u64),
    Text(String),
}

impl ResourceValue {
    pub fn to_json(&self) -> Value {
        match self {
            ResourceValue::Number(n) => Value::from(*n),
            ResourceValue::Text(s) => Value::String(s.clone()),
        }
    }
}

/// The resources of a job (or a sub-job), each well-formed; absent ones are left to the
/// batch system's defaults. Serialised with canonical values: memory in bytes, duration in
/// seconds; read with the same parse as a submission, so `"4G"` and `"1h"` are accepted.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "Map<String, Value>")]
pub struct Resources {
    pub node_count: Option<u64>,
    pub process_count: Option<u64>,
    pub processes_per_node: Option<u64>,
    pub cpu_cores_per_process: Option<u64>,
    pub gpu_cores_per_process: Option<u64>,
    /// Bytes for the whole job.
    pub memory: Option<u64>,
    /// Seconds of wall-clock time.
    pub duration: Option<u64>,
    pub queue_name: Option<String>,
    pub account: Option<String>,
    pub reservation_id: Option<String>,
}

impl TryFrom<Map<String, Value>> for Resources {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, Self::Error> {
        Resources::parse(&m, "resources").map_err(|errs| {
            errs.into_iter()
                .map(|e| format!("{}: {}", e.field, e.problem))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl Resources {
    /// Parses resources from JSON: every key a [`ResourceName`], every value well-formed
    /// (`null` is absent). Each problem names its field as `<at>.<name>`; nothing is
    /// checked against a job type here.
    pub fn parse(m: &Map<String, Value>, at: &str) -> Result<Resources, Vec<FieldError>> {
        let mut out = Resources::default();
        let mut errs = Vec::new();
        for (key, v) in m {
            if v.is_null() {
                continue;
            }
            let field = format!("{at}.{key}");
            let Some(name) = ResourceName::parse(key) else {
                errs.push(FieldError::new(field, unknown_resource()));
                continue;
            };
            match name.parse_value(v) {
                Ok(value) => out.set(name, Some(value)),
                Err(problem) => errs.push(FieldError::new(field, problem)),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    /// One resource's value.
    pub fn get(&self, name: ResourceName) -> Option<ResourceValue> {
        let num = |v: Option<u64>| v.map(ResourceValue::Number);
        let text = |v: &Option<String>| v.clone().map(ResourceValue::Text);
        match name {
            ResourceName::NodeCount => num(self.node_count),
            ResourceName::ProcessCount => num(self.process_count),
            ResourceName::ProcessesPerNode => num(self.processes_per_node),
            ResourceName::CpuCoresPerProcess => num(self.cpu_cores_per_process),
            ResourceName::GpuCoresPerProcess => num(self.gpu_cores_per_process),
            ResourceName::Memory => num(self.memory),
            ResourceName::Duration => num(self.duration),
            ResourceName::QueueName => text(&self.queue_name),
            ResourceName::Account => text(&self.account),
            ResourceName::ReservationId => text(&self.reservation_id),
        }
    }

    /// Sets one resource. A value of the wrong kind (a name for a count, a number for a
    /// name) leaves it absent; [`ResourceName::parse_value`] never makes one.
    pub fn set(&mut self, name: ResourceName, v: Option<ResourceValue>) {
        let num = v.as_ref().and_then(|v| match v {
            ResourceValue::Number(n) => Some(*n),
            ResourceValue::Text(_) => None,
        });
        let text = v.and_then(|v| match v {
            ResourceValue::Text(s) => Some(s),
            ResourceValue::Number(_) => None,
        });
        match name {
            ResourceName::NodeCount => self.node_count = num,
            ResourceName::ProcessCount => self.process_count = num,
            ResourceName::ProcessesPerNode => self.processes_per_node = num,
            ResourceName::CpuCoresPerProcess => self.cpu_cores_per_process = num,
            ResourceName::GpuCoresPerProcess => self.gpu_cores_per_process = num,
            ResourceName::Memory => self.memory = num,
            ResourceName::Duration => self.duration = num,
            ResourceName::QueueName => self.queue_name = text,
            ResourceName::Account => self.account = text,
            ResourceName::ReservationId => self.reservation_id = text,
        }
    }

    /// The resources that are set, in [`ResourceName::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ResourceName, ResourceValue)> + '_ {
        ResourceName::ALL
            .into_iter()
            .filter_map(|n| self.get(n).map(|v| (n, v)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// As a JSON object with canonical values.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_json()))
            .collect()
    }

    /// These resources with a sub-job's own on top: each resource the sub-job sets
    /// replaces the job's; and when it sets any of `node_count`, `process_count`,
    /// `processes_per_node`, it replaces all three (a sub-job's layout is its own, so a
    /// job's process count cannot contradict a sub-job's node count).
    pub fn overlay(&self, sub: &Resources) -> Resources {
        let mut out = self.clone();
        if LAYOUT.iter().any(|n| sub.get(*n).is_some()) {
            for n in LAYOUT {
                out.set(n, None);
            }
        }
        for (n, v) in sub.iter() {
            out.set(n, Some(v));
        }
        out
    }

    /// PSI/J's constraint on the layout: `process_count = node_count × processes_per_node`
    /// when all three are given, and a whole multiple of the one given with it otherwise.
    pub fn check_layout(&self) -> Result<(), String> {
        match (self.node_count, self.processes_per_node, self.process_count) {
            (Some(n), Some(ppn), Some(p)) if n.saturating_mul(ppn) != p => Err(format!(
                "is {p}; it must be node_count ({n}) × processes_per_node ({ppn})"
            )),
            (Some(n), None, Some(p)) if !p.is_multiple_of(n) => Err(format!(
                "is {p}; it must be a whole multiple of node_count ({n})"
            )),
            (None, Some(ppn), Some(p)) if !p.is_multiple_of(ppn) => Err(format!(
                "is {p}; it must be a whole multiple of processes_per_node ({ppn})"
            )),
            _ => Ok(()),
        }
    }

    /// The node count PSI/J infers: `node_count`, else `process_count / processes_per_node`,
    /// else 1.
    pub fn computed_node_count(&self) -> u64 {
        match (self.node_count, self.processes_per_node, self.process_count) {
            (Some(n), _, _) => n,
            (None, Some(ppn), Some(p)) if ppn > 0 => (p / ppn).max(1),
            _ => 1,
        }
    }
}

/// `node_count`, `process_count`, `processes_per_node`: replaced together by a sub-job.
const LAYOUT: [ResourceName; 3] = [
    ResourceName::NodeCount,
    ResourceName::ProcessCount,
    ResourceName::ProcessesPerNode,
];

fn unknown_resource() -> String {
    let names: Vec<&str> = ResourceName::ALL.iter().map(|n| n.as_str()).collect();
    format!("unknown resource; the resources are {}", names.join(", "))
}

/// What the batch system granted a batch job, as its one status query reports it (Slurm's
/// `squeue`, PBS's `qstat -f`, LSF's `bjobs -o`); what a system does not report is absent.
/// Names as in `Resources`, plus `cpu_count` (all CPU cores of the job), which PSI/J
/// does not name.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrantedResources {
    pub node_count: Option<u64>,
    pub process_count: Option<u64>,
    /// All CPU cores allocated to the job.
    pub cpu_count: Option<u64>,
    pub gpu_count: Option<u64>,
    /// Bytes (as the batch system reports it: per node for Slurm's `squeue`).
    pub memory: Option<u64>,
    /// The time limit, in seconds.
    pub duration: Option<u64>,
    pub queue_name: Option<String>,
    pub account: Option<String>,
    pub reservation_id: Option<String>,
}

impl GrantedResources {
    pub fn is_empty(&self) -> bool {
        *self == GrantedResources::default()
    }

    /// Whether every text fits `max` bytes and holds no control character (what the server
    /// keeps of an agent's report).
    pub fn texts_fit(&self, max: usize) -> bool {
        [&self.queue_name, &self.account, &self.reservation_id]
            .into_iter()
            .flatten()
            .all(|s| s.len() <= max && !s.chars().any(char::is_control))
    }
}

#[cfg(test)]
mod tests;
