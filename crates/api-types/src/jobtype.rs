//! Job types and their typed parameters, and the one parameter validator that both the
//! server (at submission) and the agent (before running) use.

pub use crate::errors::FieldError;
use crate::resources::{ResourceRules, Resources};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Longest accepted parameter or job-type name.
pub const MAX_NAME_LEN: usize = 64;

/// The type of a parameter and its constraints.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ParamKind {
    /// A string, optionally with a regular expression it must match in full and a maximum
    /// length in characters.
    #[serde(rename_all = "camelCase")]
    String {
        pattern: Option<String>,
        max_length: Option<u32>,
    },
    /// A whole number in an optional inclusive range.
    Integer {
        minimum: Option<i64>,
        maximum: Option<i64>,
    },
    /// A finite number in an optional inclusive range.
    Number {
        minimum: Option<f64>,
        maximum: Option<f64>,
    },
    Boolean,
    /// One of a fixed list of strings.
    Enum {
        values: Vec<String>,
    },
    /// A reference to a code bundle: its SHA-256 as 64 lower-case hex digits.
    Code,
}

/// One declared parameter of a job type.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParamSpec {
    /// Name; it becomes an environment variable, so `[A-Za-z_][A-Za-z0-9_]*`.
    pub name: String,
    pub description: Option<String>,
    #[serde(flatten)]
    pub kind: ParamKind,
    /// Whether the parameter must be given. Defaults to true when there is no default.
    pub required: Option<bool>,
    pub default: Option<Value>,
}

impl ParamSpec {
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(self.default.is_none())
    }
}

/// Kind of a sub-job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubJobKind {
    /// A command run directly on the login node.
    Login,
    /// A script submitted to the batch system.
    Batch,
}

/// What the server knows of a sub-job: its name and kind. The commands themselves stay in
/// the agent's config and never leave the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubJobInfo {
    pub name: String,
    pub kind: SubJobKind,
    /// Resources this (batch) sub-job fixes for itself, over the job's: each replaces the
    /// job's value, and any of `node_count`, `process_count`, `processes_per_node` replaces
    /// all three.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
}

/// A job type as an agent publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTypeSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: Vec<ParamSpec>,
    #[serde(default)]
    pub sub_jobs: Vec<SubJobInfo>,
    /// The resources a client may set (`resources` of `POST /job`), by PSI/J name, with
    /// bounds, defaults and fixed values. A resource not listed cannot be set.
    #[serde(default, skip_serializing_if = "ResourceRules::is_empty")]
    #[schema(value_type = std::collections::BTreeMap<String, crate::resources::ResourceRule>)]
    pub resources: ResourceRules,
}

/// Whether `s` is a valid name for a site, job type or parameter: ASCII letter or `_` first,
/// then letters, digits, `_`, `-` (not for parameters) and at most [`MAX_NAME_LEN`] long.
pub fn is_valid_name(s: &str, allow_dash: bool) -> bool {
    let mut chars = s.chars();
    let first_ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_');
    first_ok
        && s.len() <= MAX_NAME_LEN
        && chars.all(|c| {
            c.is_ascii_alphanumeric() || c == '_' || (allow_dash && (c == '-' || c == '.'))
        })
}

fn compile_pattern(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("pattern does not compile: {e}"))
}

/// Most compiled patterns kept by [`cached_pattern`]; a full cache is emptied (job types are
/// published by a project's agents, so the set in use is small, but not bounded by us).
const MAX_CACHED_PATTERNS: usize = 256;

/// The compiled regex of a `pattern` parameter, from a process-wide cache: compiling one
/// costs microseconds (more than the rest of a submission's validation together), and the
/// same job types' patterns are checked again and again, by the server at every submission
/// and by the agent before every run. The first check of a job type ([`JobTypeSpec::check`]
/// at publication) fills it. Shared as `Arc`, since a cloned `Regex` starts with empty match
/// caches.
fn cached_pattern(p: &str) -> Result<std::sync::Arc<regex::Regex>, String> {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock, RwLock};
    static CACHE: OnceLock<RwLock<HashMap<String, Arc<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.read().ok().and_then(|c| c.get(p).cloned()) {
        return Ok(re);
    }
    let re = Arc::new(compile_pattern(p)?);
    if let Ok(mut c) = cache.write() {
        if c.len() >= MAX_CACHED_PATTERNS {
            c.clear();
        }
        c.insert(p.to_string(), Arc::clone(&re));
    }
    Ok(re)
}

/// Whether `s` looks like a code bundle id (SHA-256, lower-case hex).
pub fn is_code_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks a parameter's constraints for sense: a pattern that compiles, bounds in order and
/// finite, an enum with values. The error names the constraint and the problem.
fn check_kind(kind: &ParamKind) -> Result<(), (&'static str, String)> {
    match kind {
        ParamKind::String {
            pattern: Some(pat), ..
        } => cached_pattern(pat).map(|_| ()).map_err(|e| ("pattern", e)),
        ParamKind::Integer {
            minimum: Some(a),
            maximum: Some(b),
        } if a > b => Err(("minimum", "is greater than maximum".into())),
        ParamKind::Number { minimum, maximum }
            if minimum.is_some_and(|v| !v.is_finite())
                || maximum.is_some_and(|v| !v.is_finite()) =>
        {
            Err(("minimum", "bounds must be finite".into()))
        }
        ParamKind::Number {
            minimum: Some(a),
            maximum: Some(b),
        } if a > b => Err(("minimum", "is greater than maximum".into())),
        ParamKind::Enum { values } if values.is_empty() => {
            Err(("values", "must list at least one value".into()))
        }
        _ => Ok(()),
    }
}

impl JobTypeSpec {
    /// Checks the job type itself: names, constraints that make sense, defaults that pass
    /// their own constraints. Field paths are relative to the job type.
    pub fn check(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        if !is_valid_name(&self.name, true) {
            errs.push(FieldError::new(
                "name",
                "must start with a letter or '_' and contain only letters, digits, '_', '-', '.' (at most 64)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.parameters.iter().enumerate() {
            let at = format!("parameters[{i}]");
            if !is_valid_name(&p.name, false) {
                errs.push(FieldError::new(
                    format!("{at}.name"),
                    "must match [A-Za-z_][A-Za-z0-9_]* (at most 64 characters)",
                ));
            }
            if !seen.insert(p.name.as_str()) {
                errs.push(FieldError::new(
                    format!("{at}.name"),
                    format!("duplicate parameter {:?}", p.name),
                ));
            }
            if let Err(problem) = check_kind(&p.kind) {
                errs.push(FieldError::new(format!("{at}.{}", problem.0), problem.1));
            }
            if let Some(d) = &p.default {
                if let Err(problem) = check_value(p, d) {
                    errs.push(FieldError::new(format!("{at}.default"), problem));
                }
            }
        }
        errs.extend(self.resources.check());
        let mut sub_seen = std::collections::HashSet::new();
        for (i, s) in self.sub_jobs.iter().enumerate() {
            if !is_valid_name(&s.name, true) {
                errs.push(FieldError::new(
                    format!("subJobs[{i}].name"),
                    "is not a valid name",
                ));
            }
            if !sub_seen.insert(s.name.as_str()) {
                errs.push(FieldError::new(
                    format!("subJobs[{i}].name"),
                    "duplicate sub-job name",
                ));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// Checks a submission's `resources` against this job type's rules and completes them
    /// with fixed values and defaults (see [`ResourceRules::apply`]).
    pub fn validate_resources(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Resources, Vec<FieldError>> {
        self.resources.apply(given, &self.name)
    }

    /// Validates the parameters of a submission against this job type and returns them with
    /// defaults filled in. Every problem is reported, each naming its field as
    /// `parameters.NAME`.
    pub fn validate_parameters(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut out = Map::new();
        for name in given.keys() {
            if !self.parameters.iter().any(|p| &p.name == name) {
                errs.push(FieldError::new(
                    format!("parameters.{name}"),
                    format!("unknown parameter for job type {:?}", self.name),
                ));
            }
        }
        for p in &self.parameters {
            let field = format!("parameters.{}", p.name);
            match given.get(&p.name) {
                None | Some(Value::Null) => {
                    if let Some(d) = &p.default {
                        out.insert(p.name.clone(), d.clone());
                    } else if p.is_required() {
                        errs.push(FieldError::new(field, "is required"));
                    }
                }
                Some(v) => match check_value(p, v) {
                    Ok(()) => {
                        out.insert(p.name.clone(), v.clone());
                    }
                    Err(problem) => errs.push(FieldError::new(field, problem)),
                },
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }
}

/// Checks one value against its parameter's type and constraints.
fn check_value(p: &ParamSpec, v: &Value) -> Result<(), String> {
    match &p.kind {
        ParamKind::String {
            pattern,
            max_length,
        } => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("must be a string, not {}", kind_of(v)))?;
            check_string(s, pattern.as_deref(), *max_length)
        }
        ParamKind::Integer { minimum, maximum } => {
            let n = v
                .as_i64()
                .ok_or_else(|| format!("must be an integer, not {}", kind_of(v)))?;
            check_range(n, *minimum, *maximum)
        }
        ParamKind::Number { minimum, maximum } => {
            let n = v
                .as_f64()
                .filter(|_| v.is_number())
                .ok_or_else(|| format!("must be a number, not {}", kind_of(v)))?;
            check_range(n, *minimum, *maximum)
        }
        ParamKind::Boolean => v
            .is_boolean()
            .then_some(())
            .ok_or_else(|| format!("must be true or false, not {}", kind_of(v))),
        ParamKind::Enum { values } => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("must be a string, not {}", kind_of(v)))?;
            if values.iter().any(|x| x == s) {
                Ok(())
            } else {
                Err(format!("must be one of {}", values.join(", ")))
            }
        }
        ParamKind::Code => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("must be a code bundle id, not {}", kind_of(v)))?;
            if is_code_id(s) {
                Ok(())
            } else {
                Err("must be a code bundle id (64 lower-case hex digits)".into())
            }
        }
    }
}

/// A string parameter: no NUL (no command can receive one), at most `max` characters, and
/// matching the whole `pattern`.
fn check_string(s: &str, pattern: Option<&str>, max: Option<u32>) -> Result<(), String> {
    if s.contains('\0') {
        return Err("contains a NUL character, which no command can receive".into());
    }
    if let Some(max) = max {
        let n = s.chars().count();
        if n > max as usize {
            return Err(format!("is {n} characters long; at most {max} are allowed"));
        }
    }
    if let Some(pat) = pattern {
        if !cached_pattern(pat)?.is_match(s) {
            return Err(format!("does not match the pattern {pat:?}"));
        }
    }
    Ok(())
}

/// A number within its bounds (either may be absent).
fn check_range<T: PartialOrd + std::fmt::Display>(
    n: T,
    min: Option<T>,
    max: Option<T>,
) -> Result<(), String> {
    match (min, max) {
        (Some(min), _) if n < min => Err(format!("is {n}; the minimum is {min}")),
        (_, Some(max)) if n > max => Err(format!("is {n}; the maximum is {max}")),
        _ => Ok(()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> JobTypeSpec {
        serde_json::from_value(json!({
            "name": "sim",
            "parameters": [
                {"name": "label", "type": "string", "pattern": "[a-z]+", "maxLength": 5},
                {"name": "steps", "type": "integer", "minimum": 1, "maximum": 100},
                {"name": "tol", "type": "number", "minimum": 0.0, "default": 0.5},
                {"name": "verbose", "type": "boolean", "required": false},
                {"name": "mode", "type": "enum", "values": ["fast", "exact"], "default": "fast"},
                {"name": "code", "type": "code", "required": false}
            ]
        }))
        .unwrap()
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn fields(r: Result<Map<String, Value>, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn spec_checks() {
        spec().check().unwrap();
        let bad: JobTypeSpec = serde_json::from_value(json!({
            "name": "bad name",
            "parameters": [
                {"name": "1x", "type": "string", "pattern": "("},
                {"name": "n", "type": "integer", "minimum": 5, "maximum": 1},
                {"name": "n", "type": "enum", "values": []},
                {"name": "d", "type": "integer", "default": "x"}
            ]
        }))
        .unwrap();
        let errs: Vec<String> = bad
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            errs,
            [
                "name",
                "parameters[0].name",
                "parameters[0].pattern",
                "parameters[1].minimum",
                "parameters[2].name",
                "parameters[2].values",
                "parameters[3].default"
            ]
        );
    }

    #[test]
    fn valid_parameters_get_defaults() {
        let out = spec()
            .validate_parameters(&params(json!({"label": "abc", "steps": 3})))
            .unwrap();
        assert_eq!(out["tol"], json!(0.5));
        assert_eq!(out["mode"], json!("fast"));
        assert!(!out.contains_key("verbose"));
    }

    #[test]
    fn each_type_is_checked() {
        let s = spec();
        assert_eq!(
            fields(s.validate_parameters(&params(json!({"steps": 3})))),
            ["parameters.label"]
        );
        assert_eq!(
            fields(s.validate_parameters(&params(json!({"label": "abc", "steps": 3, "extra": 1})))),
            ["parameters.extra"]
        );
        let cases = [
            json!({"label": "ABC", "steps": 3}),
            json!({"label": "abcdef", "steps": 3}),
            json!({"label": 5, "steps": 3}),
            json!({"label": "a\u{0}b", "steps": 3}),
            json!({"label": "abc", "steps": 0}),
            json!({"label": "abc", "steps": 101}),
            json!({"label": "abc", "steps": 2.5}),
            json!({"label": "abc", "steps": "3"}),
            json!({"label": "abc", "steps": 3, "tol": -1}),
            json!({"label": "abc", "steps": 3, "tol": "x"}),
            json!({"label": "abc", "steps": 3, "verbose": "true"}),
            json!({"label": "abc", "steps": 3, "mode": "slow"}),
            json!({"label": "abc", "steps": 3, "code": "abc"}),
        ];
        for c in cases {
            let r = s.validate_parameters(&params(c.clone()));
            assert!(r.is_err(), "{c} should be refused");
            assert_eq!(r.unwrap_err().len(), 1, "{c}");
        }
        let ok = s.validate_parameters(&params(json!({
            "label": "abc", "steps": 100, "tol": 3, "verbose": true, "mode": "exact",
            "code": "a".repeat(64)
        })));
        assert!(ok.is_ok());
    }

    #[test]
    fn cached_patterns_answer_as_compiled_ones_and_the_cache_stays_bounded() {
        let one = cached_pattern("[a-z]+").unwrap();
        assert!(std::sync::Arc::ptr_eq(
            &one,
            &cached_pattern("[a-z]+").unwrap()
        ));
        assert!(one.is_match("abc") && !one.is_match("abc1"));
        assert!(
            cached_pattern("(").is_err(),
            "a bad pattern is refused every time"
        );
        assert!(cached_pattern("(").is_err());
        for i in 0..MAX_CACHED_PATTERNS + 10 {
            let re = cached_pattern(&format!("x{{{i}}}")).unwrap();
            assert!(re.is_match(&"x".repeat(i)) && !re.is_match(&"x".repeat(i + 1)));
        }
    }

    #[test]
    fn pattern_must_match_whole_value() {
        let s = spec();
        assert!(s
            .validate_parameters(&params(json!({"label": "ab1", "steps": 1})))
            .is_err());
        let or: JobTypeSpec = serde_json::from_value(json!({
            "name": "t", "parameters": [{"name": "x", "type": "string", "pattern": "a|b"}]
        }))
        .unwrap();
        assert!(or.validate_parameters(&params(json!({"x": "ab"}))).is_err());
        assert!(or.validate_parameters(&params(json!({"x": "b"}))).is_ok());
    }
}
