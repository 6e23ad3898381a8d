//! Wire types of signed code approvals and people's SSH keys (JSON, camelCase). The message
//! format and the signature checks are `hpcsera-approval`'s; these are only the shapes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A signed code approval: the canonical approval message and an OpenSSH `SSHSIG` over it in
/// the namespace `hpcsera-code` (`ssh-keygen -Y sign -n hpcsera-code -f KEY`). The body of
/// `POST /code/{codeId}/approval`; in a bundle, also the fingerprint of the key that signed.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedApproval {
    /// The canonical message (README, "Signed approvals"), exactly as signed.
    pub message: String,
    /// The armored signature (`-----BEGIN SSH SIGNATURE-----` …).
    pub signature: String,
    /// `SHA256:…` of the signing key (set by the server; ignored in a request).
    pub key_fingerprint: Option<String>,
}

/// An SSH public key a person registered (their signed approvals are checked against it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserKey {
    pub id: String,
    pub name: String,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `type base64`, as in an OpenSSH `.pub` file (without the comment).
    pub public_key: String,
    pub created_at: String,
}

/// The presented token's user's registered SSH keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserKeyList {
    pub keys: Vec<UserKey>,
}
