//! The cluster's check of a signed approval: every condition under which an agent with
//! `require_signature` unpacks a bundle, in one function, each failure saying which check
//! failed.
//!
//! The inputs that come from the server (message, signature, the approver's name) are
//! untrusted; the expectations (project, site, the digest the agent computed itself, the
//! allowed signers, the time) are the agent's own.

use crate::allowed::{AllowedSigners, NotAllowed};
use crate::message::{format_time, ApprovalMessage, MessageError};
use crate::signature::{verify, SignatureError};
use crate::NAMESPACE;

/// What the agent knows for itself.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The project of this agent (its config, not the server's word).
    pub project: &'a str,
    pub site: &'a str,
    /// SHA-256 of the bytes the agent downloaded.
    pub digest: &'a str,
    /// Seconds since the epoch.
    pub now: i64,
}

/// What the server says about an approval.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    pub message: Option<&'a str>,
    pub signature: Option<&'a str>,
    /// Who the server says approved (the principal looked up in the allowed signers).
    pub approver: Option<&'a str>,
}

/// An approval the agent accepts.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub approver: String,
    pub fingerprint: String,
    /// The allowed-signers line that allowed the key.
    pub line: usize,
    pub message: ApprovalMessage,
}

/// Which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the approval is not signed (require_signature is on: an approval without a signature, as the admin CLI or a compromised server can make, is refused)")]
    Unsigned,
    #[error("the approval names no approver")]
    NoApprover,
    #[error("the signed approval message is not canonical: {0}")]
    Message(#[from] MessageError),
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("signer: {0}")]
    Signer(#[from] NotAllowed),
    #[error("digest: the signature approves {signed}, but the bundle's SHA-256 is {actual}")]
    Digest { signed: String, actual: String },
    #[error("project: the signature approves project {signed:?}, but this agent serves project {ours:?}")]
    Project { signed: String, ours: String },
    #[error("site: the signature approves site(s) {signed}, not this site {ours:?}")]
    Site { signed: String, ours: String },
    #[error("expiry: the signed approval expired at {at}")]
    Expired { at: String },
}

/// Checks an approval against the agent's expectations and allowed signers: the message is
/// canonical, the signature verifies in the `hpcsera-code` namespace, the key is allowed for
/// the approver now, and the message names this digest, project and site and has not expired.
pub fn check_approval(
    presented: Presented<'_>,
    signers: &AllowedSigners,
    expect: &Expect<'_>,
) -> Result<Accepted, Refusal> {
    let (Some(text), Some(signature)) = (presented.message, presented.signature) else {
        return Err(Refusal::Unsigned);
    };
    let approver = presented.approver.ok_or(Refusal::NoApprover)?;
    let message = ApprovalMessage::parse(text)?;
    let verified = verify(text.as_bytes(), signature)?;
    let line = signers.check(approver, verified.key.key_data(), NAMESPACE, expect.now)?;
    if message.digest != expect.digest {
        return Err(Refusal::Digest {
            signed: message.digest,
            actual: expect.digest.to_string(),
        });
    }
    if message.project != expect.project {
        return Err(Refusal::Project {
            signed: message.project,
            ours: expect.project.to_string(),
        });
    }
    if !message.sites.iter().any(|s| s == expect.site) {
        return Err(Refusal::Site {
            signed: message.sites.join(", "),
            ours: expect.site.to_string(),
        });
    }
    if let Some(at) = message.expires.filter(|e| *e <= expect.now) {
        return Err(Refusal::Expired {
            at: format_time(at).unwrap_or_else(|| at.to_string()),
        });
    }
    Ok(Accepted {
        approver: approver.to_string(),
        fingerprint: verified.fingerprint,
        line,
        message,
    })
}
