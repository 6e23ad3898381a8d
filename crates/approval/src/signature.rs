//! OpenSSH `SSHSIG` signatures (`ssh-keygen -Y sign`) in the namespace `hpcsera-code`:
//! verifying one, making one with a private key file, and reading public keys as people paste
//! them.
//!
//! The format is RustCrypto's `ssh-key` implementation (PROTOCOL.sshsig), never ours. A
//! signature names its own public key; verifying proves that key signed these bytes in this
//! namespace. Whose key it is — a registered user's (server) or an allowed signer's (agent) —
//! the caller decides.

use crate::NAMESPACE;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The largest armored signature accepted (an RSA-16384 signature is about 3 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;
/// The longest public key line accepted.
pub const MAX_PUBLIC_KEY_BYTES: usize = 16 * 1024;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature is longer than {MAX_SIGNATURE_BYTES} bytes")]
    TooLong,
    #[error("the signature cannot be read (expected the armored text of `ssh-keygen -Y sign`, -----BEGIN SSH SIGNATURE-----): {0}")]
    Unreadable(String),
    #[error("the signature was made for the namespace {found:?}, not {NAMESPACE:?} (sign with `-n {NAMESPACE}`)")]
    Namespace { found: String },
    #[error("the signature does not verify: it was not made over this message by the key it names ({fingerprint})")]
    Invalid { fingerprint: String },
}

/// A signature that verified: the key that made it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: PublicKey,
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// Verifies an armored `SSHSIG` over `message` in the `hpcsera-code` namespace; returns the
/// key that made it.
pub fn verify(message: &[u8], armored: &str) -> Result<Verified, SignatureError> {
    if armored.len() > MAX_SIGNATURE_BYTES {
        return Err(SignatureError::TooLong);
    }
    let sig = SshSig::from_pem(armored.trim().as_bytes())
        .map_err(|e| SignatureError::Unreadable(e.to_string()))?;
    if sig.namespace() != NAMESPACE {
        return Err(SignatureError::Namespace {
            found: sig.namespace().chars().take(64).collect(),
        });
    }
    let key = PublicKey::from(sig.public_key().clone());
    let fingerprint = fingerprint(&key);
    key.verify(NAMESPACE, message, &sig)
        .map_err(|_| SignatureError::Invalid {
            fingerprint: fingerprint.clone(),
        })?;
    Ok(Verified { key, fingerprint })
}

/// `SHA256:…` of a public key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Signs `message` with a private key (an OpenSSH private key file's text), as
/// `ssh-keygen -Y sign -n hpcsera-code` does (SHA-512). A passphrase-protected key is refused:
/// add it to an ssh-agent and sign through the agent (so is an RSA key file, see below).
pub fn sign_with_private_key(key_text: &str, message: &[u8]) -> Result<String, String> {
    let key = PrivateKey::from_openssh(key_text.as_bytes()).map_err(|e| {
        format!("cannot read the private key (an OpenSSH private key file is expected): {e}")
    })?;
    if key.is_encrypted() {
        return Err(
            "the private key is protected by a passphrase: add it to your ssh-agent (`ssh-add KEYFILE`) and sign with --ssh-agent"
                .into(),
        );
    }
    if matches!(key.algorithm(), ssh_key::Algorithm::Rsa { .. }) {
        // ssh-key 0.6.7 builds RSA private keys from the wrong primes (RustCrypto/SSH#387,
        // fixed in 0.7): verifying RSA signatures works, making them from a file does not.
        return Err(
            "RSA key files cannot sign here yet: add the key to your ssh-agent (`ssh-add KEYFILE`) and sign with --ssh-agent, or use an Ed25519 or ECDSA key"
                .into(),
        );
    }
    let sig = key
        .sign(NAMESPACE, HashAlg::Sha512, message)
        .map_err(|e| format!("cannot sign with this key: {e}"))?;
    armor(&sig)
}

/// The armored text of a signature (what `ssh-keygen -Y sign` writes to `FILE.sig`).
pub fn armor(sig: &SshSig) -> Result<String, String> {
    sig.to_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the signature: {e}"))
}

/// A public key as people paste it (`ssh-ed25519 AAAA… comment`, one line).
#[derive(Debug, Clone)]
pub struct ParsedPublicKey {
    /// `type base64`, without the comment: how the key is stored and compared.
    pub openssh: String,
    pub fingerprint: String,
    pub algorithm: String,
    /// The comment the person pasted, if any (a default name).
    pub comment: String,
}

/// Reads one OpenSSH public key line. Certificates and private keys are refused with a message.
pub fn parse_public_key(text: &str) -> Result<ParsedPublicKey, String> {
    let text = text.trim();
    if text.len() > MAX_PUBLIC_KEY_BYTES {
        return Err("the key is too long".into());
    }
    if text.starts_with("-----BEGIN") {
        return Err("this is a private key: paste the public key (the .pub file)".into());
    }
    if text.contains('\n') {
        return Err("paste one public key, on one line".into());
    }
    if text.contains("-cert-v01@openssh.com") {
        return Err("certificates are not supported: paste the plain public key".into());
    }
    let key = PublicKey::from_openssh(text).map_err(|e| {
        format!("not an OpenSSH public key (expected e.g. \"ssh-ed25519 AAAA… comment\"): {e}")
    })?;
    let comment = key.comment().to_string();
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare
        .to_openssh()
        .map_err(|e| format!("cannot encode the key: {e}"))?;
    Ok(ParsedPublicKey {
        fingerprint: fingerprint(&key),
        algorithm: key.algorithm().as_str().to_string(),
        openssh: openssh.trim().to_string(),
        comment,
    })
}
