//! What a job type lets clients ask for: per resource, bounds, a default, a fixed value or
//! a list of names; and [`ResourceRules::apply`], which turns a client's `resources` into
//! the job's [`Resources`] (the same call on the server and in the agent).
//!
//! No I/O.

use super::{unknown_resource, ResourceKind, ResourceName, ResourceValue, Resources};
use crate::errors::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// What a job type allows for one resource. Values are as a client may write them
/// (memory and duration also as strings with units, `"4G"`, `"1h"`); an agent publishes
/// them in canonical form (bytes, seconds).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRule {
    /// Smallest value a client may ask for (numeric resources).
    #[schema(value_type = Option<Object>)]
    pub minimum: Option<Value>,
    /// Largest value a client may ask for (numeric resources).
    #[schema(value_type = Option<Object>)]
    pub maximum: Option<Value>,
    /// The value when the client gives none.
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
    /// The one value: a client may leave the resource out or send exactly this.
    #[schema(value_type = Option<Object>)]
    pub fixed: Option<Value>,
    /// Names (queue, account, reservation): the values a client may choose from; empty
    /// allows any well-formed name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A job type's rules, by resource. A resource without a rule cannot be set by a client.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceRules(pub BTreeMap<ResourceName, ResourceRule>);

/// A value of `rule` parsed for `name` (canonical), or the problem.
fn parse(name: ResourceName, v: &Option<Value>) -> Result<Option<ResourceValue>, String> {
    v.as_ref().map(|v| name.parse_value(v)).transpose()
}

fn number(v: &Option<ResourceValue>) -> Option<u64> {
    match v {
        Some(ResourceValue::Number(n)) => Some(*n),
        _ => None,
    }
}

/// One rule, parsed.
struct Parsed {
    minimum: Option<u64>,
    maximum: Option<u64>,
    default: Option<ResourceValue>,
    fixed: Option<ResourceValue>,
}

impl ResourceRule {
    /// Parses the rule's values; the problems name the key (`minimum`, `default`…).
    fn parsed(&self, name: ResourceName) -> Result<Parsed, Vec<(&'static str, String)>> {
        let mut errs = Vec::new();
        let mut one = |key: &'static str, v: &Option<Value>| match parse(name, v) {
            Ok(x) => x,
            Err(problem) => {
                errs.push((key, problem));
                None
            }
        };
        let p = Parsed {
            minimum: number(&one("minimum", &self.minimum)),
            maximum: number(&one("maximum", &self.maximum)),
            default: one("default", &self.default),
            fixed: one("fixed", &self.fixed),
        };
        if errs.is_empty() {
            Ok(p)
        } else {
            Err(errs)
        }
    }

    /// Whether `v` satisfies the rule's bounds and list (not `fixed`).
    fn admits(&self, name: ResourceName, p: &Parsed, v: &ResourceValue) -> Result<(), String> {
        match v {
            ResourceValue::Number(n) => {
                let show = |x: u64| name.show_value(&ResourceValue::Number(x));
                match (p.minimum, p.maximum) {
                    (Some(min), _) if *n < min => {
                        Err(format!("is {}; the minimum is {}", show(*n), show(min)))
                    }
                    (_, Some(max)) if *n > max => {
                        Err(format!("is {}; the maximum is {}", show(*n), show(max)))
                    }
                    _ => Ok(()),
                }
            }
            ResourceValue::Text(s) if !self.values.is_empty() && !self.values.contains(s) => {
                Err(format!("must be one of {}", self.values.join(", ")))
            }
            ResourceValue::Text(_) => Ok(()),
        }
    }

    /// The rule's problems: values that do not parse, bounds out of order, keys that do
    /// not fit the resource's kind, a `fixed` with anything else, a default outside.
    fn problems(&self, name: ResourceName) -> Vec<(&'static str, String)> {
        let p = match self.parsed(name) {
            Ok(p) => p,
            Err(errs) => return errs,
        };
        let mut errs = Vec::new();
        let numeric = name.kind() != ResourceKind::Name;
        if !numeric && (self.minimum.is_some() || self.maximum.is_some()) {
            errs.push(("minimum", format!("{name} is a name; use `values`")));
        }
        if numeric && !self.values.is_empty() {
            errs.push(("values", format!("{name} is a number; use minimum/maximum")));
        }
        for (i, v) in self.values.iter().enumerate() {
            if let Err(problem) = name.parse_value(&Value::String(v.clone())) {
                errs.push(("values", format!("entry {i}: {problem}")));
            }
        }
        if let (Some(a), Some(b)) = (p.minimum, p.maximum) {
            if a > b {
                errs.push(("minimum", "is greater than maximum".into()));
            }
        }
        let others = self.minimum.is_some()
            || self.maximum.is_some()
            || self.default.is_some()
            || !self.values.is_empty();
        if p.fixed.is_some() && others {
            errs.push((
                "fixed",
                "a fixed value excludes minimum, maximum, default and values".into(),
            ));
        }
        if let Some(d) = &p.default {
            if let Err(problem) = self.admits(name, &p, d) {
                errs.push(("default", problem));
            }
        }
        errs
    }

    /// The rule with canonical values (bytes, seconds); values that do not parse stay as
    /// they are (`check` reports them).
    fn canonical(&self, name: ResourceName) -> ResourceRule {
        let canon = |v: &Option<Value>| match parse(name, v) {
            Ok(Some(x)) => Some(x.to_json()),
            _ => v.clone(),
        };
        ResourceRule {
            minimum: canon(&self.minimum),
            maximum: canon(&self.maximum),
            default: canon(&self.default),
            fixed: canon(&self.fixed),
            values: self.values.clone(),
        }
    }
}

impl ResourceRules {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rules' problems, each naming `resources.<name>.<key>`.
    pub fn check(&self) -> Vec<FieldError> {
        self.0
            .iter()
            .flat_map(|(name, rule)| {
                rule.problems(*name).into_iter().map(move |(key, problem)| {
                    FieldError::new(format!("resources.{name}.{key}"), problem)
                })
            })
            .collect()
    }

    /// The rules with canonical values (what an agent publishes).
    pub fn canonical(&self) -> ResourceRules {
        ResourceRules(self.0.iter().map(|(n, r)| (*n, r.canonical(*n))).collect())
    }

    /// A client's `resources` for a job of type `job_type`, checked against these rules
    /// and completed with fixed values and defaults. Every problem is reported, each naming
    /// its field as `resources.<name>`: an unknown resource, one the job type does not let
    /// clients set, a value that does not parse, is out of bounds, not in the list, or
    /// differs from the fixed value, and a layout that breaks PSI/J's constraint.
    pub fn apply(
        &self,
        given: &Map<String, Value>,
        job_type: &str,
    ) -> Result<Resources, Vec<FieldError>> {
        let mut out = Resources::default();
        let mut errs = Vec::new();
        for (key, v) in given {
            if v.is_null() {
                continue;
            }
            let field = format!("resources.{key}");
            let Some(name) = ResourceName::parse(key) else {
                errs.push(FieldError::new(field, unknown_resource()));
                continue;
            };
            match self.apply_one(name, v, job_type) {
                Ok(value) => out.set(name, Some(value)),
                Err(problem) => errs.push(FieldError::new(field, problem)),
            }
        }
        for (name, rule) in &self.0 {
            if out.get(*name).is_some() {
                continue;
            }
            if let Ok(p) = rule.parsed(*name) {
                out.set(*name, p.fixed.or(p.default));
            }
        }
        if let Err(problem) = out.check_layout() {
            errs.push(FieldError::new("resources.process_count", problem));
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    fn apply_one(
        &self,
        name: ResourceName,
        v: &Value,
        job_type: &str,
    ) -> Result<ResourceValue, String> {
        let rule = self
            .0
            .get(&name)
            .ok_or_else(|| format!("job type {job_type:?} does not let clients set {name}"))?;
        let value = name.parse_value(v)?;
        let p = rule
            .parsed(name)
            .map_err(|_| format!("job type {job_type:?} has an invalid rule for {name}"))?;
        if let Some(fixed) = &p.fixed {
            if *fixed != value {
                return Err(format!(
                    "is fixed at {} for job type {job_type:?}",
                    name.show_value(fixed)
                ));
            }
        }
        rule.admits(name, &p, &value)?;
        Ok(value)
    }
}
