//! Resources as scheduler options: each preset's mapping from a PSI/J resource to argv
//! entries of its submit command, overridable per resource in `[batch.resources]`.
//!
//! | resource | slurm | pbs | lsf |
//! |---|---|---|---|
//! | `node_count` | `--nodes=N` | `-l select=N:…` (chunks) | `-n N×ppn`, `-R span[ptile=ppn]` |
//! | `process_count` | `--ntasks=N` | chunks × `mpiprocs` | `-n N` |
//! | `processes_per_node` | `--ntasks-per-node=N` | `mpiprocs=N` in each chunk | `-R span[ptile=N]` |
//! | `cpu_cores_per_process` | `--cpus-per-task=N` | `ncpus=mpiprocs×N` in each chunk | `-R affinity[core(N)]` |
//! | `gpu_cores_per_process` | `--gpus-per-task=N` | `ngpus=mpiprocs×N` in each chunk | `-gpu num=ppn×N` |
//! | `memory` (bytes, whole job) | `--mem=<MiB per node>M` | `mem=<MiB per node>mb` in each chunk | `-R rusage[mem=<MiB per node>MB]` |
//! | `duration` (seconds) | `--time=D-HH:MM:SS` | `-l walltime=H:MM:SS` | `-W <minutes>` |
//! | `queue_name` | `--partition=Q` | `-q Q` | `-q Q` |
//! | `account` | `--account=A` | `-A A` | `-P A` |
//! | `reservation_id` | `--reservation=R` | `-q R` (a PBS reservation is a queue) | `-U R` |
//!
//! "Per node" divides by PSI/J's computed node count, rounding up. PBS's chunk resources
//! make one `-l select=` entry; a chunk resource overridden in `[batch.resources]` leaves the
//! chunk and is rendered by its own template.
//!
//! An override is an argv array with placeholders: `{value}` (the canonical value: a count,
//! bytes, seconds or a name), `{mib}` and `{mib_per_node}` (memory, rounded up),
//! `{minutes}`, `{hms}`, `{d_hms}` (duration). An empty array renders nothing for that
//! resource. Values are well-formed names or numbers ([`Resources`]), each replaced inside
//! one argv entry: never shell text.
//!
//! Pure functions: this module must never run a command.

use super::template::{expand, Vars};
use super::BatchPreset;
use hpcsera_api_types::resources::units;
use hpcsera_api_types::{ResourceName, ResourceValue, Resources};
use std::collections::BTreeMap;

/// Per-resource overrides of a preset's mapping (`[batch.resources]`).
pub type ResourceTemplates = BTreeMap<ResourceName, Vec<String>>;

/// The preset's template for one resource (`None`: PBS chunk resources, which make the
/// `select`; LSF's layout, which is rendered from the three layout resources together).
fn preset_template(preset: BatchPreset, name: ResourceName) -> Option<&'static [&'static str]> {
    use ResourceName::*;
    Some(match (preset, name) {
        (BatchPreset::Slurm, NodeCount) => &["--nodes={value}"],
        (BatchPreset::Slurm, ProcessCount) => &["--ntasks={value}"],
        (BatchPreset::Slurm, ProcessesPerNode) => &["--ntasks-per-node={value}"],
        (BatchPreset::Slurm, CpuCoresPerProcess) => &["--cpus-per-task={value}"],
        (BatchPreset::Slurm, GpuCoresPerProcess) => &["--gpus-per-task={value}"],
        (BatchPreset::Slurm, Memory) => &["--mem={mib_per_node}M"],
        (BatchPreset::Slurm, Duration) => &["--time={d_hms}"],
        (BatchPreset::Slurm, QueueName) => &["--partition={value}"],
        (BatchPreset::Slurm, Account) => &["--account={value}"],
        (BatchPreset::Slurm, ReservationId) => &["--reservation={value}"],
        (BatchPreset::Pbs, Duration) => &["-l", "walltime={hms}"],
        (BatchPreset::Pbs, QueueName) => &["-q", "{value}"],
        (BatchPreset::Pbs, Account) => &["-A", "{value}"],
        (BatchPreset::Pbs, ReservationId) => &["-q", "{value}"],
        (BatchPreset::Lsf, CpuCoresPerProcess) => &["-R", "affinity[core({value})]"],
        (BatchPreset::Lsf, Memory) => &["-R", "rusage[mem={mib_per_node}MB]"],
        (BatchPreset::Lsf, Duration) => &["-W", "{minutes}"],
        (BatchPreset::Lsf, QueueName) => &["-q", "{value}"],
        (BatchPreset::Lsf, Account) => &["-P", "{value}"],
        (BatchPreset::Lsf, ReservationId) => &["-U", "{value}"],
        _ => return None,
    })
}

/// The resources as argv entries for `preset`'s submit command, with `overrides` applied.
/// Resources are rendered in [`ResourceName::ALL`] order; a GPU count of 0 renders nothing.
pub fn render(preset: BatchPreset, overrides: &ResourceTemplates, r: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    let mut own: Vec<ResourceName> = Vec::new();
    for (name, value) in r.iter() {
        if name == ResourceName::GpuCoresPerProcess && value == ResourceValue::Number(0) {
            continue;
        }
        let template: Vec<String> = match overrides.get(&name) {
            Some(t) => t.clone(),
            None => match preset_template(preset, name) {
                Some(t) => t.iter().map(|s| s.to_string()).collect(),
                None => {
                    own.push(name);
                    continue;
                }
            },
        };
        out.extend(expand_one(&template, &value, r));
    }
    let mut all = match preset {
        BatchPreset::Pbs => pbs_select(r, &own),
        BatchPreset::Lsf => lsf_layout(r, &own),
        _ => Vec::new(),
    };
    all.extend(out);
    all
}

/// One resource's template expanded.
fn expand_one(template: &[String], value: &ResourceValue, r: &Resources) -> Vec<String> {
    let (n, text) = match value {
        ResourceValue::Number(n) => (*n, n.to_string()),
        ResourceValue::Text(s) => (0, s.clone()),
    };
    let mib = units::mib_rounded_up(n).to_string();
    let per_node = mib_per_node(n, r).to_string();
    let minutes = units::minutes_rounded_up(n).to_string();
    let hms = units::hms(n);
    let d_hms = units::d_hms(n);
    let vars = Vars {
        single: vec![
            ("value", text.as_str()),
            ("mib", mib.as_str()),
            ("mib_per_node", per_node.as_str()),
            ("minutes", minutes.as_str()),
            ("hms", hms.as_str()),
            ("d_hms", d_hms.as_str()),
        ],
        lists: vec![],
    };
    expand(template, &vars)
}

/// Memory per node in MiB, rounded up (memory is for the whole job, as in PSI/J).
fn mib_per_node(bytes: u64, r: &Resources) -> u64 {
    units::mib_rounded_up(bytes.div_ceil(r.computed_node_count().max(1)))
}

/// Processes per node as PSI/J computes it: given, else `process_count / node_count`,
/// else 1.
fn computed_ppn(r: &Resources) -> u64 {
    match (r.processes_per_node, r.process_count, r.node_count) {
        (Some(ppn), _, _) => ppn,
        (None, Some(p), Some(n)) if n > 0 => (p / n).max(1),
        _ => 1,
    }
}

/// PBS Pro's `-l select=CHUNKS:ncpus=…:mpiprocs=…:mem=…mb:ngpus=…` from the chunk
/// resources in `own`: one chunk per node (with a node count or processes per node), else
/// one chunk per process, else one chunk.
fn pbs_select(r: &Resources, own: &[ResourceName]) -> Vec<String> {
    use ResourceName::*;
    let has = |n: ResourceName| own.contains(&n);
    if own.is_empty() {
        return Vec::new();
    }
    let by_node = has(NodeCount) || has(ProcessesPerNode);
    let (chunks, procs) = if by_node {
        (r.computed_node_count(), computed_ppn(r))
    } else if has(ProcessCount) {
        (r.process_count.unwrap_or(1), 1)
    } else {
        (1, 1)
    };
    let cpus = if has(CpuCoresPerProcess) {
        r.cpu_cores_per_process.unwrap_or(1)
    } else {
        1
    };
    let mut select = format!("select={chunks}:ncpus={}", procs * cpus);
    if by_node || has(ProcessCount) {
        select.push_str(&format!(":mpiprocs={procs}"));
    }
    if let (true, Some(m)) = (has(Memory), r.memory) {
        select.push_str(&format!(
            ":mem={}mb",
            units::mib_rounded_up(m.div_ceil(chunks))
        ));
    }
    if let (true, Some(g)) = (has(GpuCoresPerProcess), r.gpu_cores_per_process) {
        select.push_str(&format!(":ngpus={}", procs * g));
    }
    vec!["-l".into(), select]
}

/// LSF's `-n` (tasks), `-R span[ptile=…]` (tasks per host) and `-gpu num=…` (per host)
/// from the layout resources in `own`.
fn lsf_layout(r: &Resources, own: &[ResourceName]) -> Vec<String> {
    use ResourceName::*;
    let has = |n: ResourceName| own.contains(&n);
    let mut out = Vec::new();
    let layout = has(NodeCount) || has(ProcessCount) || has(ProcessesPerNode);
    if layout {
        let ppn = computed_ppn(r);
        let tasks = match (r.process_count, r.node_count) {
            (Some(p), _) if has(ProcessCount) => p,
            (_, Some(n)) => n * ppn,
            _ => ppn,
        };
        out.extend(["-n".to_string(), tasks.to_string()]);
        if has(NodeCount) || has(ProcessesPerNode) {
            out.extend(["-R".to_string(), format!("span[ptile={ppn}]")]);
        }
    }
    if let (true, Some(g)) = (has(GpuCoresPerProcess), r.gpu_cores_per_process) {
        out.extend(["-gpu".to_string(), format!("num={}", computed_ppn(r) * g)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: serde_json::Value) -> Resources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn overrides_replace_or_drop_one_resource() {
        let r = res(json!({"node_count": 2, "gpu_cores_per_process": 1, "duration": 90}));
        let mut o = ResourceTemplates::new();
        o.insert(
            ResourceName::GpuCoresPerProcess,
            vec!["--gres=gpu:{value}".into()],
        );
        o.insert(ResourceName::Duration, vec![]);
        assert_eq!(
            render(BatchPreset::Slurm, &o, &r),
            ["--nodes=2", "--gres=gpu:1"]
        );
        // A PBS chunk resource with its own template leaves the chunk.
        let mut o = ResourceTemplates::new();
        o.insert(
            ResourceName::GpuCoresPerProcess,
            vec!["-l".into(), "gpus={value}".into()],
        );
        assert_eq!(
            render(BatchPreset::Pbs, &o, &r),
            [
                "-l",
                "select=2:ncpus=1:mpiprocs=1",
                "-l",
                "gpus=1",
                "-l",
                "walltime=0:01:30"
            ]
        );
    }

    #[test]
    fn zero_gpus_and_nothing_render_nothing() {
        let none = ResourceTemplates::new();
        for p in [BatchPreset::Slurm, BatchPreset::Pbs, BatchPreset::Lsf] {
            assert!(render(p, &none, &Resources::default()).is_empty());
            assert!(render(p, &none, &res(json!({"gpu_cores_per_process": 0}))).is_empty());
        }
    }
}
