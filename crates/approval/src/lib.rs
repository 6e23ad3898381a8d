//! Signed code approvals: approvals the cluster can verify without trusting the server.
//!
//! A person approves a code bundle by signing the canonical [`ApprovalMessage`] (digest,
//! project, sites, optional expiry) with their SSH key as an OpenSSH `SSHSIG` in the
//! [`NAMESPACE`] `hpcsera-code` — with `ssh-keygen -Y sign -n hpcsera-code -f KEY`, or with
//! `hpcsera code approve --sign KEY | --ssh-agent`. The server verifies the signature against
//! the keys its users registered before it records the approval; an agent with
//! `[approval] require_signature = true` verifies it again against its own allowed-signers
//! file ([`AllowedSigners`], [`check_approval`]) before it unpacks anything.
//!
//! Parts: the message format (`message.rs`), signatures and public keys (`signature.rs`, over
//! RustCrypto's `ssh-key`: no signature format is written here), allowed-signers files
//! (`allowed.rs`), the agent's whole check (`check.rs`) and an ssh-agent client
//! (`ssh_agent.rs`). **Architecture Invariant:** no network or file I/O except the ssh-agent
//! socket; callers read files and talk HTTP.

pub mod allowed;
pub mod check;
pub mod message;
pub mod signature;
pub mod ssh_agent;

pub use allowed::{AllowedSigners, LineError, NotAllowed};
pub use check::{check_approval, Accepted, Expect, Presented, Refusal};
pub use message::{ApprovalMessage, MessageError};
pub use signature::{
    fingerprint, parse_public_key, sign_with_private_key, verify, ParsedPublicKey, SignatureError,
    Verified,
};
pub use ssh_agent::{AgentKey, SshAgent};

/// The `SSHSIG` namespace of code approvals (`ssh-keygen -Y sign -n hpcsera-code`), so that a
/// signature made for anything else (git commits, files) never counts as an approval.
pub const NAMESPACE: &str = "hpcsera-code";
