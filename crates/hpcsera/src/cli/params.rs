//! `-p key=value` → typed JSON parameters, using the job type's declared parameter types.

use super::{CliError, CliResult};
use hpcsera_api_types::{JobTypeSpec, ParamKind};
use serde_json::{Map, Value};
use std::path::Path;

/// Reads `--param-file`: a JSON object of parameter values.
pub fn read_file(path: &Path) -> CliResult<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::usage(format!(
            "{} must hold a JSON object of parameter values",
            path.display()
        ))),
        Err(e) => Err(CliError::usage(format!(
            "{} is not valid JSON: {e}",
            path.display()
        ))),
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
pub(super) fn convert(name: &str, kind: &ParamKind, raw: &str) -> CliResult<Value> {
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
        let (name, raw) = pair
            .split_once('=')
            .ok_or_else(|| CliError::usage(format!("-p takes key=value, not {pair:?}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
