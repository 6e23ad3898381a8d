//! The job form of a job type: typed inputs made from the type's parameters (number inputs
//! with min/max, a select for an enum, a checkbox for a boolean, text with the pattern and
//! length, a code parameter as a digest field offering the project's bundles), submitted
//! through the API's own `routes::jobs::submit` — the very checks of `POST /api/v1/job` — and,
//! when they fail, shown again with each 422 field's problem next to its input. A job made
//! goes to its page, where its output follows live.
//!
//! The form needs `POST_Job` in the membership (403 otherwise) and the session's CSRF token.
//! Each form carries a fresh `Idempotency-Key`, so a form posted twice (a double click, the
//! back button) makes one job.
//!
//! Resources (PSI/J's `node_count`, `duration`, … that the job type lets a client set, with
//! its bounds, default or fixed value) get inputs too (`resource_fields`: a number for counts,
//! text with units for memory and duration, a select or text for names, a fixed value shown
//! without an input), named `r.NAME`; they go into the `NewJob`'s `resources`, checked by the
//! same `JobTypeSpec::validate_resources` as the API's.

use super::access::{PageError, ProjectAccess};
use super::{render, Nav, UiError, UiForm, UiSession};
use crate::error::ApiError;
use crate::routes::jobs::{submit, Submitter};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use hpcsera_api_types::resources::{ResourceKind, ResourceName, ResourceRule};
use hpcsera_api_types::{is_valid_name, FieldError, JobTypeSpec, NewJob, ParamKind, Role};
use serde_json::{Map, Value};

const SUBMIT: &[Role] = &[Role::PostJob];

/// The form's page and its post.
pub(crate) fn routes() -> Router<AppState> {
    Router::new().route(
        "/ui/projects/{project}/sites/{site}/{job_type}",
        get(form_page).post(post_form),
    )
}

/// One input of the form.
pub(crate) struct Field {
    /// The parameter's or resource's name, as the label shows it.
    pub name: String,
    /// The input's `id` (`p-NAME`, `r-NAME`), form name (`p.NAME`, `r.NAME`) and the id of
    /// its problem text (`e-NAME`, `e-r-NAME`).
    pub id: String,
    pub input: String,
    pub error_id: String,
    /// `number`, `select`, `checkbox`, `text`, `code`, or `fixed` (shown, not sent).
    pub control: &'static str,
    pub kind: String,
    pub description: String,
    pub required: bool,
    pub value: String,
    pub checked: bool,
    pub step: &'static str,
    pub min: String,
    pub max: String,
    pub pattern: String,
    pub maxlength: String,
    pub options: Vec<String>,
    pub problem: Option<String>,
}

impl Field {
    /// A text input with nothing filled in: not required, no bounds, no options.
    fn blank(name: &str, id: String, input: String, error_id: String, kind: String) -> Field {
        Field {
            name: name.to_string(),
            id,
            input,
            error_id,
            control: "text",
            kind,
            description: String::new(),
            required: false,
            value: String::new(),
            checked: false,
            step: "1",
            min: String::new(),
            max: String::new(),
            pattern: String::new(),
            maxlength: String::new(),
            options: Vec::new(),
            problem: None,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/submit.html")]
struct FormPage {
    nav: Nav,
    project: String,
    site: String,
    job_type: String,
    description: String,
    fields: Vec<Field>,
    /// Problems that belong to no input.
    problems: Vec<String>,
    /// The job type's resources a client may set.
    resources: Vec<Field>,
    /// Whether some input has a problem.
    any_problem: bool,
    idempotency: String,
    /// The project's code bundles (newest first), offered for code parameters.
    bundles: Vec<(String, &'static str)>,
}

/// The inputs of a job type, parameters then resources; `given` the values of a posted form
/// (else the defaults).
fn fields(spec: &JobTypeSpec, given: Option<&UiForm>) -> Vec<Field> {
    let mut all = param_fields(spec, given);
    all.extend(resource_fields(spec, given));
    all
}

fn param_fields(spec: &JobTypeSpec, given: Option<&UiForm>) -> Vec<Field> {
    let opt = |v: Option<String>| v.unwrap_or_default();
    spec.parameters
        .iter()
        .map(|p| {
            let key = format!("p.{}", p.name);
            let default = p.default.as_ref().map(show_value).unwrap_or_default();
            let value = match given {
                Some(f) => f.get(&key).unwrap_or("").to_string(),
                None => default.clone(),
            };
            let (id, error_id) = (format!("p-{}", p.name), format!("e-{}", p.name));
            let mut f = Field {
                description: p.description.clone().unwrap_or_default(),
                required: p.is_required(),
                checked: given.map_or(default == "true", |f| f.get(&key).is_some()),
                value,
                ..Field::blank(&p.name, id, key.clone(), error_id, kind_text(&p.kind))
            };
            match &p.kind {
                ParamKind::Integer { minimum, maximum } => {
                    f.control = "number";
                    (f.min, f.max) = (
                        opt(minimum.map(|v| v.to_string())),
                        opt(maximum.map(|v| v.to_string())),
                    );
                }
                ParamKind::Number { minimum, maximum } => {
                    f.control = "number";
                    f.step = "any";
                    (f.min, f.max) = (
                        opt(minimum.map(|v| v.to_string())),
                        opt(maximum.map(|v| v.to_string())),
                    );
                }
                ParamKind::Boolean => f.control = "checkbox",
                ParamKind::Enum { values } => {
                    f.control = "select";
                    f.options = values.clone();
                }
                ParamKind::String {
                    pattern,
                    max_length,
                } => {
                    f.pattern = pattern.clone().unwrap_or_default();
                    f.maxlength = opt(max_length.map(|v| v.to_string()));
                }
                ParamKind::Code => {
                    f.control = "code";
                    f.pattern = "[0-9a-f]{64}".into();
                }
            }
            f
        })
        .collect()
}

/// The submission a posted form means: each parameter's text as its JSON type (a number
/// that does not parse stays text, and the validator says so), an empty input left out (so
/// the default applies, or "is required"), an unticked checkbox `false`.
fn job_of_form(site: &str, spec: &JobTypeSpec, form: &UiForm) -> NewJob {
    let mut parameters = Map::new();
    for p in &spec.parameters {
        let raw = form.get(&format!("p.{}", p.name)).map(str::trim);
        let value = match (&p.kind, raw) {
            (ParamKind::Boolean, v) => Value::Bool(v.is_some()),
            (_, None | Some("")) => continue,
            (ParamKind::Integer { .. }, Some(t)) => t
                .parse::<i64>()
                .map_or_else(|_| Value::String(t.into()), Value::from),
            (ParamKind::Number { .. }, Some(t)) => t
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| Value::String(t.into()), Value::Number),
            (_, Some(t)) => Value::String(t.into()),
        };
        parameters.insert(p.name.clone(), value);
    }
    let mut resources = Map::new();
    for (name, rule) in &spec.resources.0 {
        let raw = form.get(&format!("r.{}", name.as_str())).map(str::trim);
        let Some(t) = raw.filter(|t| !t.is_empty() && rule.fixed.is_none()) else {
            continue;
        };
        // Counts, bytes and seconds as numbers when they are plain digits; "4G", "1h30m"
        // and names as text (the rules parse both).
        let value = match (name.kind(), t.parse::<u64>()) {
            (ResourceKind::Name, _) | (_, Err(_)) => Value::String(t.into()),
            (_, Ok(n)) => Value::from(n),
        };
        resources.insert(name.as_str().to_string(), value);
    }
    NewJob {
        site: site.to_string(),
        job_type: spec.name.clone(),
        parameters,
        resources,
        metadata: None,
        callback_url: None,
    }
}

/// The inputs of the job type's resources (after the parameters'); `given` as in [`fields`].
fn resource_fields(spec: &JobTypeSpec, given: Option<&UiForm>) -> Vec<Field> {
    spec.resources
        .0
        .iter()
        .map(|(name, rule)| {
            let n = name.as_str();
            let show = |v: &Option<Value>| show_rule(*name, v);
            let default = show(&rule.default);
            let key = format!("r.{n}");
            let (id, error_id) = (format!("r-{n}"), format!("e-r-{n}"));
            let value = match given {
                Some(form) => form.get(&key).unwrap_or("").to_string(),
                None => default,
            };
            let kind = resource_text(*name, rule);
            let mut f = Field {
                value,
                ..Field::blank(n, id, key, error_id, kind)
            };
            if rule.fixed.is_some() {
                f.control = "fixed";
                f.value = show(&rule.fixed);
            } else if name.kind() == ResourceKind::Count {
                f.control = "number";
                let bound =
                    |v: &Option<Value>| v.as_ref().and_then(Value::as_u64).map(|n| n.to_string());
                f.min = bound(&rule.minimum).unwrap_or_default();
                f.max = bound(&rule.maximum).unwrap_or_default();
            } else if !rule.values.is_empty() {
                f.control = "select";
                f.options = rule.values.clone();
            }
            f
        })
        .collect()
}

/// A value of a resource rule for people (`4G`, `1h30m`); empty when there is none.
fn show_rule(name: ResourceName, v: &Option<Value>) -> String {
    v.as_ref()
        .and_then(|v| name.parse_value(v).ok())
        .map(|v| name.show_value(&v))
        .unwrap_or_default()
}

/// A resource's rule in words: `a whole number, 1 to 4; default 1`, `fixed: 1h`.
pub(crate) fn resource_text(name: ResourceName, rule: &ResourceRule) -> String {
    let show = |v: &Option<Value>| show_rule(name, v);
    let what = match name.kind() {
        ResourceKind::Count => "a whole number",
        ResourceKind::Bytes => "a size such as 4G or 512M",
        ResourceKind::Seconds => "a duration such as 1h30m",
        ResourceKind::Name => "a name",
    };
    if rule.fixed.is_some() {
        return format!("fixed: {}", show(&rule.fixed));
    }
    let mut s = if rule.values.is_empty() {
        what.to_string()
    } else {
        format!("one of {}", rule.values.join(", "))
    };
    match (show(&rule.minimum), show(&rule.maximum)) {
        (a, b) if !a.is_empty() && !b.is_empty() => s.push_str(&format!(", {a} to {b}")),
        (a, _) if !a.is_empty() => s.push_str(&format!(", at least {a}")),
        (_, b) if !b.is_empty() => s.push_str(&format!(", at most {b}")),
        _ => {}
    }
    let d = show(&rule.default);
    if !d.is_empty() {
        s.push_str(&format!("; default {d}"));
    }
    s
}

/// The job type of the URL: 404 for a name no job type of the project's has at that site.
async fn job_type(
    state: &AppState,
    access: &ProjectAccess,
    site: &str,
    name: &str,
) -> Result<JobTypeSpec, PageError> {
    if !is_valid_name(site, true) || !is_valid_name(name, true) {
        return Err(UiError::NotFound.into());
    }
    Ok(state.store.job_type(site, access.project_id, name).await?.1)
}

#[allow(clippy::too_many_arguments)]
async fn page(
    state: &AppState,
    session: &UiSession,
    access: &ProjectAccess,
    site: String,
    spec: &JobTypeSpec,
    mut fields: Vec<Field>,
    problems: Vec<String>,
    idempotency: String,
    status: StatusCode,
) -> Result<Response, PageError> {
    let params = spec.parameters.len();
    let has_code = spec.parameters.iter().any(|p| p.kind == ParamKind::Code);
    let bundles = if has_code {
        state
            .store
            .list_bundles(access.project_id)
            .await?
            .into_iter()
            .map(|b| (b.id, b.status.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    Ok(render(
        status,
        &FormPage {
            nav: Nav::new(session, "sites"),
            project: access.project.clone(),
            site,
            job_type: spec.name.clone(),
            description: spec.description.clone(),
            any_problem: fields.iter().any(|f| f.problem.is_some()),
            resources: fields.split_off(params),
            fields,
            problems,
            idempotency,
            bundles,
        },
    ))
}

/// `GET /ui/projects/{project}/sites/{site}/{job_type}`.
async fn form_page(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, site, name)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_page(&state, &session, &project, SUBMIT).await?;
    let spec = job_type(&state, &access, &site, &name).await?;
    let fields = fields(&spec, None);
    let key = hpcsera_store::random_secret();
    page(
        &state,
        &session,
        &access,
        site,
        &spec,
        fields,
        Vec::new(),
        key,
        StatusCode::OK,
    )
    .await
}

/// `POST /ui/projects/{project}/sites/{site}/{job_type}`: the job, then its page (303); or
/// the form again with the problems (422).
async fn post_form(
    State(state): State<AppState>,
    session: UiSession,
    Path((project, site, name)): Path<(String, String, String)>,
    form: UiForm,
) -> Result<Response, PageError> {
    let access = ProjectAccess::for_form(&state, &session, &form, &project, SUBMIT).await?;
    let spec = job_type(&state, &access, &site, &name).await?;
    let body = job_of_form(&site, &spec, &form);
    // A key of another shape is dropped (the job is then made without one) rather than
    // refused: it is the form's, not the person's.
    let key = form
        .get("idempotency")
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string);
    let who = Submitter {
        project_id: access.project_id,
        user_id: session.rec.user_id,
        actor: format!("user:{}", session.rec.user),
    };
    let err = match submit(&state, &who, &body, key.as_deref()).await {
        Ok(made) => {
            let to = format!("/ui/projects/{}/jobs/{}", access.project, made.job.id);
            let what = format!("/ui/projects/{}/sites/{site}/{name}", access.project);
            return Ok(access.changed(&state, &session, &what, &to));
        }
        Err(e) => e,
    };
    let status = err.status();
    let mut fields = fields(&spec, Some(&form));
    let problems = match err {
        ApiError::Unprocessable { fields: errs, .. }
        | ApiError::BadRequest { fields: errs, .. } => place_problems(&mut fields, errs),
        ApiError::Internal(e) => {
            tracing::error!(error = %crate::error::chain(e.as_ref()), "the job form's submission failed");
            vec!["Something went wrong on the server. Try again later.".into()]
        }
        other => vec![other.to_string()],
    };
    let key = key.unwrap_or_else(hpcsera_store::random_secret);
    page(
        &state, &session, &access, site, &spec, fields, problems, key, status,
    )
    .await
}

/// Puts each `parameters.NAME` and `resources.NAME` problem next to its input; returns the
/// others, as text.
fn place_problems(fields: &mut [Field], errs: Vec<FieldError>) -> Vec<String> {
    let mut rest = Vec::new();
    for e in errs {
        let input = if let Some(n) = e.field.strip_prefix("parameters.") {
            format!("p.{n}")
        } else if let Some(n) = e.field.strip_prefix("resources.") {
            format!("r.{n}")
        } else {
            String::new()
        };
        let at = fields.iter_mut().find(|f| f.input == input);
        match at {
            Some(f) => f.problem = Some(e.problem),
            None if e.field == "Idempotency-Key" => rest.push(
                "This form was sent before with other values, and its job was made then. \
                 Open the form again to submit another job."
                    .into(),
            ),
            None => rest.push(format!("{}: {}", e.field, e.problem)),
        }
    }
    rest
}

/// A parameter's type and constraints in words: `integer, 1 to 1000`.
pub(crate) fn kind_text(kind: &ParamKind) -> String {
    fn range<T: std::fmt::Display>(min: &Option<T>, max: &Option<T>) -> String {
        match (min, max) {
            (Some(a), Some(b)) => format!(", {a} to {b}"),
            (Some(a), None) => format!(", at least {a}"),
            (None, Some(b)) => format!(", at most {b}"),
            (None, None) => String::new(),
        }
    }
    match kind {
        ParamKind::String {
            pattern,
            max_length,
        } => {
            let mut s = "text".to_string();
            if let Some(p) = pattern {
                s.push_str(&format!(", matching {p}"));
            }
            if let Some(m) = max_length {
                s.push_str(&format!(", at most {m} characters"));
            }
            s
        }
        ParamKind::Integer { minimum, maximum } => {
            format!("whole number{}", range(minimum, maximum))
        }
        ParamKind::Number { minimum, maximum } => format!("number{}", range(minimum, maximum)),
        ParamKind::Boolean => "yes or no".into(),
        ParamKind::Enum { values } => format!("one of {}", values.join(", ")),
        ParamKind::Code => "code bundle (its SHA-256)".into(),
    }
}

/// A default as people read it (strings without quotes).
pub(crate) fn show_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_in_words() {
        let int = ParamKind::Integer {
            minimum: Some(1),
            maximum: Some(9),
        };
        assert_eq!(kind_text(&int), "whole number, 1 to 9");
        let s = ParamKind::String {
            pattern: Some("[a-z]+".into()),
            max_length: Some(8),
        };
        assert_eq!(kind_text(&s), "text, matching [a-z]+, at most 8 characters");
        let n = ParamKind::Number {
            minimum: None,
            maximum: Some(0.5),
        };
        assert_eq!(kind_text(&n), "number, at most 0.5");
    }

    fn spec() -> JobTypeSpec {
        serde_json::from_value(serde_json::json!({
            "name": "sim",
            "parameters": [
                {"name": "steps", "type": "integer", "minimum": 1, "maximum": 9, "default": 3},
                {"name": "tol", "type": "number", "required": false},
                {"name": "verbose", "type": "boolean", "default": true},
                {"name": "mode", "type": "enum", "values": ["a", "b"]},
                {"name": "tag", "type": "string", "required": false}
            ]
        }))
        .unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> UiForm {
        UiForm::of(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn form_text_becomes_typed_json_and_empty_inputs_are_left_out() {
        let f = form(&[
            ("p.steps", " 5 "),
            ("p.tol", "0.25"),
            ("p.mode", "b"),
            ("p.tag", ""),
        ]);
        let job = job_of_form("s", &spec(), &f);
        assert_eq!(
            Value::Object(job.parameters),
            serde_json::json!({"steps": 5, "tol": 0.25, "verbose": false, "mode": "b"})
        );
        let bad = job_of_form(
            "s",
            &spec(),
            &form(&[("p.steps", "five"), ("p.verbose", "true")]),
        );
        assert_eq!(bad.parameters["steps"], "five");
        assert_eq!(bad.parameters["verbose"], true);
    }

    #[test]
    fn inputs_follow_the_types_and_defaults() {
        let fs = fields(&spec(), None);
        let kinds: Vec<&str> = fs.iter().map(|f| f.control).collect();
        assert_eq!(kinds, ["number", "number", "checkbox", "select", "text"]);
        assert_eq!(
            (fs[0].min.as_str(), fs[0].max.as_str(), fs[0].value.as_str()),
            ("1", "9", "3")
        );
        assert_eq!(fs[1].step, "any");
        assert!(fs[2].checked);
        let mut fs = fs;
        let rest = place_problems(
            &mut fs,
            vec![
                FieldError::new("parameters.steps", "must be at most 9"),
                FieldError::new("metadata", "too big"),
            ],
        );
        assert_eq!(fs[0].problem.as_deref(), Some("must be at most 9"));
        assert_eq!(rest, ["metadata: too big"]);
    }
}
