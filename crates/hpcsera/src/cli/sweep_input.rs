//! What `hpcsera sweep submit` sends: `--from-file` (YAML through `serde_norway`, JSON, or
//! CSV with a header of parameter names), `--grid name=v1,v2,…`, `-p name=value` and
//! `--resources name=value,…`, typed by the job type's declared parameter types.
//!
//! Owns parsing only; every rule about a sweep's members is the server's (and `api-types`').

use super::params::convert;
use super::{CliError, CliResult};
use hpcsera_api_types::{JobTypeSpec, NewSweep};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Largest `--from-file` read (a sweep body may be 16 MiB).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What a sweep file may hold: the body of `POST /sweeps` without site and job type (any
/// of its fields), or just a list of parameter sets.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SweepFile {
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub resources: Option<Value>,
    #[serde(default)]
    pub parameter_sets: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    pub grid: Option<BTreeMap<String, Vec<Value>>>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum FileShape {
    Sets(Vec<Map<String, Value>>),
    Whole(SweepFile),
}

/// Reads a sweep file by its extension: `.yaml`/`.yml`, `.json`, `.csv`.
pub fn read_file(path: &Path, spec: &JobTypeSpec) -> CliResult<SweepFile> {
    let cannot = |e: &dyn std::fmt::Display| CliError::usage(format!("{}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(|e| cannot(&e))?.len();
    if len > MAX_FILE_BYTES {
        return Err(cannot(&"is larger than 16 MiB"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| cannot(&e))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let shape: FileShape = match ext.as_str() {
        "yaml" | "yml" => serde_norway::from_str(&text).map_err(|e| cannot(&e))?,
        "json" => serde_json::from_str(&text).map_err(|e| cannot(&e))?,
        "csv" => FileShape::Sets(read_csv(&text, spec).map_err(|e| cannot(&e))?),
        _ => return Err(cannot(&"is not .yaml, .yml, .json or .csv")),
    };
    Ok(match shape {
        FileShape::Sets(sets) => SweepFile {
            parameter_sets: Some(sets),
            ..Default::default()
        },
        FileShape::Whole(w) => w,
    })
}

/// CSV: the header names parameters, each row is a member; cells are typed by the job
/// type, and an empty cell leaves the parameter out (the base or default applies).
fn read_csv(text: &str, spec: &JobTypeSpec) -> Result<Vec<Map<String, Value>>, String> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    let mut sets = Vec::new();
    for (i, row) in r.records().enumerate() {
        let row = row.map_err(|e| e.to_string())?;
        let mut set = Map::new();
        for (name, cell) in header.iter().zip(row.iter()) {
            if cell.is_empty() {
                continue;
            }
            let v = typed(spec, name, cell).map_err(|e| format!("row {}: {}", i + 2, e.message))?;
            set.insert(name.clone(), v);
        }
        sets.push(set);
    }
    Ok(sets)
}

/// A value typed by the parameter's declared type (as `-p` types it); an unknown parameter
/// stays a string, for the server to name.
fn typed(spec: &JobTypeSpec, name: &str, raw: &str) -> CliResult<Value> {
    match spec.parameters.iter().find(|p| p.name == name) {
        Some(p) => convert(name, &p.kind, raw),
        None => Ok(Value::String(raw.to_string())),
    }
}

/// `--grid name=v1,v2,…` (repeatable): one axis each, values typed by the job type.
pub fn grid(spec: &JobTypeSpec, axes: &[String]) -> CliResult<BTreeMap<String, Vec<Value>>> {
    let mut out = BTreeMap::new();
    for a in axes {
        let (name, values) = a
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--grid takes name=v1,v2,…, not {a:?}")))?;
        let values = values
            .split(',')
            .map(|v| typed(spec, name, v))
            .collect::<CliResult<Vec<_>>>()?;
        if out.insert(name.to_string(), values).is_some() {
            return Err(CliError::usage(format!("--grid names {name:?} twice")));
        }
    }
    Ok(out)
}

/// The request: the file first, then the command line over it (`-p` into the base
/// parameters, `--grid` replaces the file's grid, `--resources` into its resources).
pub fn body(
    site: &str,
    job_type: &str,
    file: SweepFile,
    parameters: Map<String, Value>,
    grid: BTreeMap<String, Vec<Value>>,
    resources: Map<String, Value>,
) -> NewSweep {
    let mut res = match file.resources {
        Some(Value::Object(m)) => m,
        Some(_) | None => Map::new(),
    };
    res.extend(resources);
    NewSweep {
        site: site.to_string(),
        job_type: job_type.to_string(),
        parameters,
        resources: res,
        parameter_sets: file.parameter_sets,
        grid: if grid.is_empty() {
            file.grid
        } else {
            Some(grid)
        },
        metadata: file.metadata,
        callback_url: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> JobTypeSpec {
        serde_json::from_value(json!({"name": "t", "parameters": [
            {"name": "steps", "type": "integer"}, {"name": "mode", "type": "enum", "values": ["fast", "exact"]},
            {"name": "tol", "type": "number"}]})).unwrap()
    }

    #[test]
    fn grid_values_are_typed() {
        let g = grid(&spec(), &["steps=100,200".into(), "mode=fast,exact".into()]).unwrap();
        assert_eq!(g["steps"], vec![json!(100), json!(200)]);
        assert_eq!(g["mode"], vec![json!("fast"), json!("exact")]);
        assert!(grid(&spec(), &["steps=1,x".into()]).is_err());
        assert!(grid(&spec(), &["steps".into()]).is_err());
        assert!(grid(&spec(), &["steps=1".into(), "steps=2".into()]).is_err());
    }

    #[test]
    fn files_of_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("s.yaml");
        std::fs::write(&yaml, "parameters:\n  tol: 0.5\ngrid:\n  steps: [1, 2]\n").unwrap();
        let f = read_file(&yaml, &spec()).unwrap();
        assert_eq!(f.parameters["tol"], json!(0.5));
        assert_eq!(f.grid.unwrap()["steps"], vec![json!(1), json!(2)]);
        let list = dir.path().join("s.yml");
        std::fs::write(&list, "- steps: 1\n- steps: 2\n  mode: exact\n").unwrap();
        assert_eq!(
            read_file(&list, &spec())
                .unwrap()
                .parameter_sets
                .unwrap()
                .len(),
            2
        );
        let csv = dir.path().join("s.csv");
        std::fs::write(&csv, "steps, mode,tol\n1,fast,0.1\n2,,\n").unwrap();
        let sets = read_file(&csv, &spec()).unwrap().parameter_sets.unwrap();
        assert_eq!(
            sets[0],
            *json!({"steps": 1, "mode": "fast", "tol": 0.1})
                .as_object()
                .unwrap()
        );
        assert_eq!(sets[1], *json!({"steps": 2}).as_object().unwrap());
        std::fs::write(&csv, "steps\nabc\n").unwrap();
        assert!(read_file(&csv, &spec())
            .unwrap_err()
            .message
            .contains("row 2"));
        let json_file = dir.path().join("s.json");
        std::fs::write(
            &json_file,
            r#"{"parameterSets": [{"steps": 3}], "resources": {"node_count": 2}}"#,
        )
        .unwrap();
        let f = read_file(&json_file, &spec()).unwrap();
        let b = body(
            "s",
            "t",
            f,
            Map::new(),
            BTreeMap::new(),
            crate::cli::params::resources(&["duration=1h".into()]).unwrap(),
        );
        assert_eq!(
            Value::Object(b.resources),
            json!({"node_count": 2, "duration": "1h"})
        );
        std::fs::write(&json_file, r#"{"bogus": 1}"#).unwrap();
        assert!(read_file(&json_file, &spec()).is_err());
        assert!(read_file(&dir.path().join("s.txt"), &spec()).is_err());
    }
}
