//! The body of every error reply (`{"error": {"code", "message", "fields"?, …}}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// Path of the field, e.g. `parameters.steps`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Every error reply: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable, machine-readable code such as `validation_failed`, `not_found`, `conflict`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// For validation errors: each bad field and its problem (at most 100; texts cut to 512
    /// bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
    /// How many more problems were found than `fields` lists.
    pub more_fields: Option<u64>,
    /// The request id (also in the `x-request-id` header), for reports to operators.
    pub request_id: Option<String>,
}
