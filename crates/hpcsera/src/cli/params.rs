//! `-p key=value` → typed JSON parameters, using the job type's declared parameter types;
//! parameter files (`--params-file FILE` or `-p @FILE`): a YAML or JSON mapping of values;
//! `--resources name=value,…` → the `resources` object.

use super::{CliError, CliResult};
use hpcsera_api_types::{JobTypeSpec, ParamKind, ResourceKind, ResourceName};
use serde_json::{Map, Value};
use std::path::Path;

/// Most bytes of a parameter file (the server takes request bodies of 1 MiB by default).
const MAX_PARAMS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a parameter file: a mapping of parameter values, JSON for a `.json` file, YAML
/// otherwise (YAML 1.2, of which JSON is a part). Values keep their types (`n: 5` is a number).
pub fn read_file(path: &Path) -> CliResult<Map<String, Value>> {
    use std::io::Read;
    let show = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PARAMS_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| CliError::usage(format!("cannot read {show}: {e}")))?;
    if text.len() as u64 > MAX_PARAMS_FILE_BYTES {
        return Err(CliError::usage(format!(
            "{show} is larger than {MAX_PARAMS_FILE_BYTES} bytes"
        )));
    }
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed = if json {
        serde_json::from_str::<Value>(&text).map_err(|e| format!("is not valid JSON: {e}"))
    } else {
        serde_norway::from_str::<Value>(&text).map_err(|e| format!("is not valid YAML: {e}"))
    };
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::usage(format!(
            "{show} must hold a mapping of parameter names to values"
        ))),
        Err(e) => Err(CliError::usage(format!("{show} {e}"))),
    }
}

/// A code bundle given as `-p key=@path`: pushes it and returns its digest.
async fn code_bundle(client: &hpcsera_client::Client, name: &str, path: &str) -> CliResult<String> {
    let digest = super::code::push_path(client, std::path::Path::new(path))
        .await
        .map_err(|e| CliError::other(format!("-p {name}=@{path}: {e:#}")))?;
    eprintln!("pushed {path} as code bundle {digest}");
    Ok(digest)
}

/// Converts one value by the parameter's type.
fn convert(name: &str, kind: &ParamKind, raw: &str) -> CliResult<Value> {
    let bad = |what: &str| CliError::usage(format!("parameter {name}: {raw:?} is not {what}"));
    Ok(match kind {
        ParamKind::Integer { .. } => {
            Value::from(raw.trim().parse::<i64>().map_err(|_| bad("an integer"))?)
        }
        ParamKind::Number { .. } => {
            let n: f64 = raw.trim().parse().map_err(|_| bad("a number"))?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number"))?
        }
        ParamKind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Value::Bool(true),
            "false" | "no" | "0" | "off" => Value::Bool(false),
            _ => return Err(bad("a boolean (true or false)")),
        },
        ParamKind::String { .. } | ParamKind::Enum { .. } | ParamKind::Code => {
            Value::String(raw.to_string())
        }
    })
}

/// Builds the parameters: the file's values first, then each `-p key=value` (converted by
/// the declared type; `@path` for a code-bundle parameter pushes the bundle).
pub async fn build(
    client: &hpcsera_client::Client,
    site: &str,
    spec: &JobTypeSpec,
    mut params: Map<String, Value>,
    pairs: &[String],
) -> CliResult<Map<String, Value>> {
    for pair in pairs {
        if let Some(file) = pair.strip_prefix('@').filter(|_| !pair.contains('=')) {
            // `-p @params.yaml`: a file's values, in command-line order with the others.
            params.extend(read_file(Path::new(file))?);
            continue;
        }
        let (name, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("-p takes key=value or @FILE, not {pair:?}")))?;
        let Some(p) = spec.parameters.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = spec.parameters.iter().map(|p| p.name.as_str()).collect();
            return Err(CliError::usage(if known.is_empty() {
                format!(
                    "unknown parameter {name:?}: job type {:?} at site {site:?} takes no parameters",
                    spec.name
                )
            } else {
                format!(
                    "unknown parameter {name:?} for job type {:?} at site {site:?}; its parameters are: {}",
                    spec.name,
                    known.join(", ")
                )
            }));
        };
        let value = match (&p.kind, raw.strip_prefix('@')) {
            (ParamKind::Code, Some(path)) => Value::String(code_bundle(client, name, path).await?),
            (kind, _) => convert(name, kind, raw)?,
        };
        params.insert(name.to_string(), value);
    }
    Ok(params)
}

/// `--resources node_count=2,duration=1h` (each flag may list several, comma-separated):
/// counts become integers, memory and duration integers when they are plain digits and
/// strings with units otherwise (`4G`, `1h30m`), names strings. Each value is checked as
/// the server parses it; whether the job type allows it is the server's answer.
pub fn resources(flags: &[String]) -> CliResult<Map<String, Value>> {
    let mut out = Map::new();
    for item in flags.iter().flat_map(|f| f.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let (key, raw) = item
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("--resources {item:?}: expected NAME=VALUE")))?;
        let name = ResourceName::parse(key.trim()).ok_or_else(|| {
            let names: Vec<&str> = ResourceName::ALL.iter().map(|n| n.as_str()).collect();
            CliError::usage(format!(
                "--resources: unknown resource {key:?}; the resources are {}",
                names.join(", ")
            ))
        })?;
        let raw = raw.trim();
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        let value = match name.kind() {
            ResourceKind::Name => Value::String(raw.to_string()),
            _ if digits => raw
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| CliError::usage(format!("--resources {key}: {raw:?} is too large")))?,
            ResourceKind::Count => {
                return Err(CliError::usage(format!(
                    "--resources {key}: {raw:?} is not a whole number"
                )))
            }
            ResourceKind::Bytes | ResourceKind::Seconds => Value::String(raw.to_string()),
        };
        name.parse_value(&value)
            .map_err(|p| CliError::usage(format!("--resources {key}: {p}")))?;
        out.insert(name.as_str().to_string(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_by_type() {
        let int = ParamKind::Integer {
            minimum: None,
            maximum: None,
        };
        assert_eq!(convert("n", &int, "42").unwrap(), Value::from(42));
        assert!(convert("n", &int, "4.2").is_err());
        assert_eq!(
            convert("b", &ParamKind::Boolean, "yes").unwrap(),
            Value::Bool(true)
        );
        let s = ParamKind::String {
            pattern: None,
            max_length: None,
        };
        assert_eq!(convert("s", &s, " 42 ").unwrap(), Value::from(" 42 "));
        let num = ParamKind::Number {
            minimum: None,
            maximum: None,
        };
        assert_eq!(convert("x", &num, "1.5").unwrap(), Value::from(1.5));
        assert!(convert("x", &num, "NaN").is_err());
    }

    #[test]
    fn resources_flags() {
        let r = resources(&[
            "node_count=2,duration=1h".into(),
            "memory=4G".into(),
            "queue_name=debug".into(),
        ])
        .map_err(|e| e.message)
        .unwrap();
        assert_eq!(
            Value::Object(r),
            json!({"node_count": 2, "duration": "1h", "memory": "4G", "queue_name": "debug"})
        );
        let r = resources(&["duration=600".into()])
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(r["duration"], json!(600));
        for bad in [
            "nodes=2",
            "node_count=two",
            "node_count",
            "duration=soon",
            "queue_name=-x",
            "node_count=0",
        ] {
            assert!(resources(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
