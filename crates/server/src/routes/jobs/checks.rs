//! Checks a submission and a client's change share: the parameters' size, `metadata`,
//! `callbackUrl` against the allow-list, and the code bundles the parameters name.
//!
//! Each check appends to a list of field errors, so that one 422 names every bad field. They
//! must never read or write the store.

use crate::state::AppState;
use hpcsera_api_types::FieldError;
use serde_json::Value;

/// Largest `metadata` object, serialised.
const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most bytes of a job's parameters (serialized JSON, defaults filled in), so that a page of
/// jobs stays small.
const MAX_PARAMETERS_BYTES: usize = 64 * 1024;

/// The code parameters of validated parameters: `(name, bundle id)`.
pub(crate) fn code_refs(
    spec: &hpcsera_api_types::JobTypeSpec,
    params: &serde_json::Map<String, Value>,
) -> Vec<hpcsera_store::CodeRef> {
    spec.parameters
        .iter()
        .filter(|p| p.kind == hpcsera_api_types::ParamKind::Code)
        .filter_map(|p| {
            params
                .get(&p.name)
                .and_then(Value::as_str)
                .map(|id| (p.name.clone(), id.to_string()))
        })
        .collect()
}

/// The length of `v` as JSON, without building the text.
fn json_len(v: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

pub(crate) fn check_parameters_size(p: &impl serde::Serialize, errs: &mut Vec<FieldError>) {
    let len = json_len(p);
    if len > MAX_PARAMETERS_BYTES {
        errs.push(FieldError::new(
            "parameters",
            format!("are {len} bytes as JSON; the limit is 64 KiB"),
        ));
    }
}

pub(crate) fn check_metadata(m: Option<&Value>, errs: &mut Vec<FieldError>) {
    if let Some(m) = m {
        if !m.is_object() {
            errs.push(FieldError::new("metadata", "must be a JSON object"));
        } else if serde_json::to_string(m)
            .map(|s| s.len())
            .unwrap_or(usize::MAX)
            > MAX_METADATA_BYTES
        {
            errs.push(FieldError::new("metadata", "is larger than 16 KiB"));
        }
    }
}

pub(crate) fn check_callback(st: &AppState, url: Option<&str>, errs: &mut Vec<FieldError>) {
    let Some(raw) = url else { return };
    let parsed = match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
        _ => {
            errs.push(FieldError::new(
                "callbackUrl",
                "must be an absolute http or https URL",
            ));
            return;
        }
    };
    if !crate::webhooks::callback_allowed(&st.config.webhooks.callback_allow_hosts, &parsed) {
        let host = parsed.host_str().unwrap_or_default();
        let target = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        errs.push(FieldError::new(
            "callbackUrl",
            format!("{target:?} is not in the server's callback allow-list"),
        ));
    }
}
