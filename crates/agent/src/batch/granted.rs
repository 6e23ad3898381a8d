//! What the batch system granted a job, read from the same one status query per cycle that
//! gives its state (never a query per job):
//!
//! | | slurm (`squeue --format=…\|%D\|%C\|%l\|%P\|%a\|%v\|%m`) | pbs (`qstat -f -F json`) | lsf (`bjobs -o "… queue proj_name nexec_host nalloc_slot runtimelimit rsvid"`) |
//! |---|---|---|---|
//! | `node_count` | `%D` | `Resource_List.nodect` | `NEXEC_HOST` |
//! | `process_count` | – | `Resource_List.mpiprocs` | – |
//! | `cpu_count` | `%C` | `Resource_List.ncpus` | `NALLOC_SLOT` |
//! | `gpu_count` | – | `Resource_List.ngpus` | – |
//! | `memory` | `%m` (per node or per CPU, as requested) | `Resource_List.mem` | – |
//! | `duration` | `%l` | `Resource_List.walltime` | `RUNTIMELIMIT` (minutes) |
//! | `queue_name` | `%P` | `queue` | `QUEUE` |
//! | `account` | `%a` | `Account_Name` | `PROJ_NAME` |
//! | `reservation_id` | `%v` | – | `RSVID` |
//!
//! For a pending job this is the request as the batch system completed it (a partition's
//! default time limit, say); from its start, the allocation.
//!
//! Pure functions: this module must never run a command.

use hpcsera_api_types::resources::units::parse_memory;
use hpcsera_api_types::GrantedResources;
use serde_json::Value;

/// Longest name kept (queue, account, reservation).
const MAX_NAME: usize = 128;

/// A name as the batch system prints it; `(null)`, `N/A`, `-` and empty are none.
fn name(s: &str) -> Option<String> {
    let s = s.trim();
    let none = s.is_empty() || matches!(s, "(null)" | "N/A" | "-" | "None" | "none");
    (!none && s.len() <= MAX_NAME && !s.chars().any(char::is_control)).then(|| s.to_string())
}

fn count(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// A Slurm time as `squeue %l` prints it: `[D-]HH:MM:SS`, `MM:SS`, `MM`; `UNLIMITED`,
/// `NOT_SET`, `INVALID` are none.
pub fn parse_slurm_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let (days, clock) = match s.split_once('-') {
        Some((d, c)) => (d.parse::<u64>().ok()?, c),
        None => (0, s),
    };
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    let secs = match parts[..] {
        [h, m, s] => h * 3600 + m * 60 + s,
        [m, s] => m * 60 + s,
        [m] => m * 60,
        _ => return None,
    };
    Some(days * 86_400 + secs)
}

/// A PBS walltime: `HH:MM:SS` (hours may exceed 24), `MM:SS`, or seconds.
fn parse_pbs_time(s: &str) -> Option<u64> {
    let parts: Vec<u64> = s
        .trim()
        .split(':')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [h, m, s] => Some(h * 3600 + m * 60 + s),
        [m, s] => Some(m * 60 + s),
        [s] => Some(s),
        _ => None,
    }
}

fn some(g: GrantedResources) -> Option<GrantedResources> {
    (!g.is_empty()).then_some(g)
}

/// The fields after `ID|STATE|REASON` of `squeue --format=%i|%T|%r|%D|%C|%l|%P|%a|%v|%m`.
pub fn slurm(fields: &[&str]) -> Option<GrantedResources> {
    let at = |i: usize| fields.get(i).copied().unwrap_or("");
    some(GrantedResources {
        node_count: count(at(0)),
        cpu_count: count(at(1)),
        duration: parse_slurm_time(at(2)),
        queue_name: name(at(3)),
        account: name(at(4)),
        reservation_id: name(at(5)),
        memory: parse_memory(at(6)).ok().filter(|m| *m > 0),
        ..Default::default()
    })
}

fn json_u64(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn json_name(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).and_then(name)
}

/// One job of `qstat -f -F json`.
pub fn pbs(job: &Value) -> Option<GrantedResources> {
    let rl = job.get("Resource_List");
    let r = |k: &str| rl.and_then(|m| m.get(k));
    some(GrantedResources {
        node_count: json_u64(r("nodect")),
        process_count: json_u64(r("mpiprocs")),
        cpu_count: json_u64(r("ncpus")),
        gpu_count: json_u64(r("ngpus")),
        memory: r("mem")
            .and_then(Value::as_str)
            .and_then(|m| parse_memory(m).ok()),
        duration: r("walltime")
            .and_then(Value::as_str)
            .and_then(parse_pbs_time),
        queue_name: json_name(job.get("queue")),
        account: json_name(job.get("Account_Name")),
        reservation_id: None,
    })
}

/// One record of `bjobs -json -o "… queue proj_name nexec_host nalloc_slot runtimelimit
/// rsvid"`; `RUNTIMELIMIT` is minutes (`60.0`, or `60.0/host`).
pub fn lsf(r: &Value) -> Option<GrantedResources> {
    let minutes = r
        .get("RUNTIMELIMIT")
        .and_then(Value::as_str)
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|m| m.is_finite() && *m > 0.0 && *m < 1e9);
    some(GrantedResources {
        node_count: json_u64(r.get("NEXEC_HOST")),
        cpu_count: json_u64(r.get("NALLOC_SLOT")),
        duration: minutes.map(|m| (m * 60.0).round() as u64),
        queue_name: json_name(r.get("QUEUE")),
        account: json_name(r.get("PROJ_NAME")),
        reservation_id: json_name(r.get("RSVID")),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times() {
        assert_eq!(parse_slurm_time("5:00"), Some(300));
        assert_eq!(parse_slurm_time("1:00:00"), Some(3600));
        assert_eq!(parse_slurm_time("1-00:00:00"), Some(86_400));
        assert_eq!(parse_slurm_time("30"), Some(1800));
        assert_eq!(parse_slurm_time("UNLIMITED"), None);
        assert_eq!(parse_slurm_time("NOT_SET"), None);
    }

    #[test]
    fn empty_answers_are_none() {
        assert_eq!(slurm(&[]), None);
        assert_eq!(
            slurm(&["", "", "UNLIMITED", "(null)", "(null)", "(null)", "0"]),
            None
        );
        assert_eq!(pbs(&serde_json::json!({"job_state": "Q"})), None);
        assert_eq!(lsf(&serde_json::json!({"JOBID": "1", "QUEUE": "-"})), None);
    }
}
