//! The one place where the agent decides whether an approval is good enough to unpack a
//! bundle, when `[approval] require_signature = true`.
//!
//! The server's word ("approved") is not enough then: the approval must carry a signature
//! that verifies against the agent's own allowed-signers file for the approver, over a
//! canonical message naming this site, this agent's project (from its config) and the SHA-256
//! the agent computed of the downloaded bytes, not expired (`hpcsera_approval::check_approval`).
//! A compromised server can still withhold or delay jobs, but cannot make the agent unpack
//! code that no listed person signed. The allowed-signers file is read again for every check,
//! so a removed signer is refused from the next job on.

use super::agent::Agent;
use super::error::AgentError;
use hpcsera_approval::{check_approval, AllowedSigners, Expect, Presented};
use hpcsera_client::CodeBundle;
use std::path::Path;

/// Reads an allowed-signers file: refused when others may write to it (they could add a
/// signer) or when a line cannot be used.
pub(super) fn load_allowed_signers(path: &Path) -> Result<AllowedSigners, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{shown} can be written by group or others (mode {mode:04o}); run `chmod go-w {shown}`"
        ));
    }
    if meta.len() > hpcsera_approval::allowed::MAX_FILE_BYTES as u64 {
        return Err(format!("{shown} is too large"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    AllowedSigners::parse(&text).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{shown}:{}: {}", e.line, e.problem))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

impl Agent {
    /// At start: with `require_signature`, the allowed-signers file must be readable and
    /// every line usable (the agent refuses to start otherwise).
    pub(super) fn check_approval_setup(&self) -> Result<(), AgentError> {
        let a = &self.cfg.approval;
        if !a.require_signature {
            return Ok(());
        }
        let path = a.allowed_signers.as_deref().unwrap_or(Path::new(""));
        let signers = load_allowed_signers(path).map_err(AgentError::Approval)?;
        if signers.is_empty() {
            tracing::warn!(file = %path.display(), "the allowed-signers file lists no key: no code bundle will run");
        }
        tracing::info!(file = %path.display(), keys = signers.len(), "code approvals must be signed by an allowed signer");
        Ok(())
    }

    /// With `require_signature`: the approval of `bundle`, whose downloaded bytes have SHA-256
    /// `sha`, must pass every check; the error ([`CodeError::Approval`]'s reason) says which
    /// one failed. Without it: nothing to check here (the server's approval and the digest
    /// check stand).
    pub(super) fn check_signed_approval(
        &self,
        bundle: &CodeBundle,
        sha: &str,
    ) -> Result<(), String> {
        let a = &self.cfg.approval;
        if !a.require_signature {
            return Ok(());
        }
        let path = a.allowed_signers.as_deref().unwrap_or(Path::new(""));
        let signers = load_allowed_signers(path)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let signed = bundle.approval.as_ref();
        let presented = Presented {
            message: signed.map(|s| s.message.as_str()),
            signature: signed.map(|s| s.signature.as_str()),
            approver: bundle.decided_by.as_deref(),
        };
        let expect = Expect {
            project: a.project.as_deref().unwrap_or(""),
            site: &self.cfg.site,
            digest: sha,
            now,
        };
        let ok = check_approval(presented, &signers, &expect).map_err(|r| r.to_string())?;
        tracing::info!(code = %bundle.id, approver = %ok.approver, key = %ok.fingerprint,
            allowed_signers_line = ok.line, "the signed approval verified");
        Ok(())
    }
}
