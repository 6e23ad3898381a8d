//! The API's error type: every failure becomes a JSON body
//! `{"error": {"code", "message", "fields"?, "requestId"?}}` with the right status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hpcsera_api_types::{ErrorBody, ErrorDetail, FieldError};
use hpcsera_store::StoreError;

tokio::task_local! {
    /// The id of the request being served, so that error bodies can carry it.
    pub static REQUEST_ID: String;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        fields: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        fields: Vec<FieldError>,
        /// Problems found beyond those in `fields` (see [`MAX_FIELDS`]).
        more_fields: usize,
    },
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests; retry after this many seconds.
    #[error("too many requests for this token; retry in {0} s")]
    TooManyRequests(u64),
    /// Too many failed authentications from this address; retry after this many seconds.
    #[error("too many failed authentications from this address; retry in {0} s")]
    TooManyAuthFailures(u64),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Most problems an error body lists; the rest are counted in `moreFields`, so that the
/// answer to a large bad request stays small.
pub const MAX_FIELDS: usize = 100;
/// Most bytes of a field name or problem in an error body.
pub const MAX_FIELD_TEXT: usize = 512;

fn bounded(f: FieldError) -> FieldError {
    let cut = |s: String| {
        if s.len() <= MAX_FIELD_TEXT {
            s
        } else {
            format!("{}…", hpcsera_api_types::cut_to_bytes(&s, MAX_FIELD_TEXT))
        }
    };
    FieldError {
        field: cut(f.field),
        problem: cut(f.problem),
    }
}

impl ApiError {
    pub fn bad_field(field: &str, problem: impl Into<String>) -> Self {
        let FieldError { field, problem } = bounded(FieldError::new(field, problem));
        ApiError::BadRequest {
            message: format!("{field}: {problem}"),
            fields: vec![FieldError::new(field, problem)],
        }
    }

    pub fn invalid_field(field: &str, problem: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, problem)])
    }

    /// A 422 listing the problems: at most [`MAX_FIELDS`] of them, each cut to
    /// [`MAX_FIELD_TEXT`] bytes, and the count of the rest.
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        Self::invalid_at_most(fields, MAX_FIELDS, 0)
    }

    /// A 422 listing at most `max` (≤ [`MAX_FIELDS`]) of the problems, counting the rest and
    /// `uncounted` problems not in `fields` at all (a sweep lists its first bad members).
    pub fn invalid_at_most(mut fields: Vec<FieldError>, max: usize, uncounted: usize) -> Self {
        let max = max.min(MAX_FIELDS);
        let more_fields = fields.len().saturating_sub(max) + uncounted;
        fields.truncate(max);
        let fields: Vec<FieldError> = fields.into_iter().map(bounded).collect();
        let mut message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.problem))
            .collect::<Vec<_>>()
            .join("; ");
        if more_fields > 0 {
            message.push_str(&format!("; and {more_fields} more problems"));
        }
        ApiError::Unprocessable {
            code: "validation_failed",
            message,
            fields,
            more_fields,
        }
    }

    /// The HTTP status this error is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::TooManyRequests(_) | ApiError::TooManyAuthFailures(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(fields) => ApiError::invalid(fields),
            StoreError::IdempotencyMismatch => ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used before with a different request body"
                    .into(),
                fields: vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request",
                )],
                more_fields: 0,
            },
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// Writes an error and its whole cause chain on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let request_id = REQUEST_ID.try_with(Clone::clone).ok();
        let message = match &self {
            ApiError::Internal(e) => {
                tracing::error!(error = %chain(e.as_ref()), "internal error");
                "internal error; the server log has the details (quote the request id)".to_string()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::TooManyRequests(s) | ApiError::TooManyAuthFailures(s) => Some(*s),
            _ => None,
        };
        let (fields, more_fields) = match self {
            ApiError::BadRequest { fields, .. } => (fields, 0),
            ApiError::Unprocessable {
                fields,
                more_fields,
                ..
            } => (fields, more_fields),
            _ => (Vec::new(), 0),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                fields,
                more_fields: (more_fields > 0).then_some(more_fields as u64),
                request_id,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"hpcsera\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
