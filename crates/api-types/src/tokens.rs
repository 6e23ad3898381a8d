//! The web UI's token API: what a logged-in session sends to make one of its own tokens
//! (`POST /tokens`) and what it gets back, the secret once.

use crate::dto::TokenInfo;
use crate::role::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /tokens` (a logged-in session only; a token never makes a token).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// A name to recognise the token by (1 to 100 characters).
    pub name: String,
    /// One of the session user's projects.
    pub project: String,
    /// At least one role, at most the member's roles in the project.
    pub roles: Vec<Role>,
    /// Restrict the token to one site.
    pub site: Option<String>,
    /// Lifetime in days, 1 to the server's `--token-max-days` (default `--token-default-days`).
    pub expires_in_days: Option<u32>,
}

/// The answer to `POST /tokens`: the token, and its secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    pub token: TokenInfo,
    pub secret: String,
}
