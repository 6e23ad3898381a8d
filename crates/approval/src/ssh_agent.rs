//! A small client of the SSH agent protocol (draft-miller-ssh-agent): list the agent's keys and
//! have one of them sign an `SSHSIG` approval, so that the private key never leaves the agent
//! (and hardware-backed or passphrase-protected keys work).
//!
//! Only two requests are used: `SSH_AGENTC_REQUEST_IDENTITIES` (11) and
//! `SSH_AGENTC_SIGN_REQUEST` (13, with `SSH_AGENT_RSA_SHA2_512` for RSA keys, as
//! `ssh-keygen -Y sign` asks). The `SSHSIG` wrapping is `ssh-key`'s: the agent signs
//! `SshSig::signed_data`, and the answer is put into an `SshSig`. Replies are bounded in size.

use crate::NAMESPACE;
use ssh_key::{Algorithm, HashAlg, PublicKey, Signature, SshSig};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const REQUEST_IDENTITIES: u8 = 11;
const IDENTITIES_ANSWER: u8 = 12;
const SIGN_REQUEST: u8 = 13;
const SIGN_RESPONSE: u8 = 14;
const FAILURE: u8 = 5;
const RSA_SHA2_512: u32 = 4;
/// The largest reply read from an agent.
const MAX_REPLY_BYTES: usize = 256 * 1024;
/// An agent may ask its user to confirm (`ssh-add -c`) or to touch a security key.
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to an SSH agent.
pub struct SshAgent {
    stream: UnixStream,
}

/// A key the agent holds.
#[derive(Debug, Clone)]
pub struct AgentKey {
    pub key: PublicKey,
    pub comment: String,
    pub fingerprint: String,
}

impl SshAgent {
    /// Connects to the agent at `path` (usually `$SSH_AUTH_SOCK`).
    pub fn connect(path: &Path) -> Result<SshAgent, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot connect to the ssh-agent at {}: {e}", path.display()))?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| e.to_string())?;
        Ok(SshAgent { stream })
    }

    /// Connects to the agent named by `SSH_AUTH_SOCK`.
    pub fn from_env() -> Result<SshAgent, String> {
        let path = std::env::var_os("SSH_AUTH_SOCK")
            .filter(|p| !p.is_empty())
            .ok_or("SSH_AUTH_SOCK is not set: start an ssh-agent and add your key (ssh-add)")?;
        SshAgent::connect(Path::new(&path))
    }

    /// Sends one request and reads its reply: (type, contents).
    fn call(&mut self, kind: u8, body: &[u8]) -> Result<(u8, Vec<u8>), String> {
        let io = |e: std::io::Error| format!("ssh-agent: {e}");
        let len = u32::try_from(body.len() + 1).map_err(|_| "ssh-agent: request too large")?;
        let mut req = Vec::with_capacity(body.len() + 5);
        req.extend(len.to_be_bytes());
        req.push(kind);
        req.extend(body);
        self.stream.write_all(&req).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_REPLY_BYTES {
            return Err(format!("ssh-agent: a reply of {len} bytes"));
        }
        let mut reply = vec![0u8; len];
        self.stream.read_exact(&mut reply).map_err(io)?;
        Ok((reply[0], reply.split_off(1)))
    }

    /// The keys the agent holds (keys it cannot describe, e.g. certificates, are left out).
    pub fn keys(&mut self) -> Result<Vec<AgentKey>, String> {
        let (kind, body) = self.call(REQUEST_IDENTITIES, &[])?;
        if kind != IDENTITIES_ANSWER {
            return Err(format!("ssh-agent refused to list its keys (reply {kind})"));
        }
        let mut r = Reader(&body);
        let n = r.u32()?;
        let mut keys = Vec::new();
        for _ in 0..n {
            let blob = r.string()?;
            let comment = String::from_utf8_lossy(r.string()?).into_owned();
            if let Ok(key) = PublicKey::from_bytes(blob) {
                keys.push(AgentKey {
                    fingerprint: crate::fingerprint(&key),
                    key,
                    comment,
                });
            }
        }
        Ok(keys)
    }

    /// Has the agent sign `message` with `key` as an `SSHSIG` in the `hpcsera-code` namespace;
    /// returns the armored signature.
    pub fn sign(&mut self, key: &PublicKey, message: &[u8]) -> Result<String, String> {
        let data =
            SshSig::signed_data(NAMESPACE, HashAlg::Sha512, message).map_err(|e| e.to_string())?;
        let blob = key.to_bytes().map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        put_string(&mut body, &blob)?;
        put_string(&mut body, &data)?;
        let flags = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
            RSA_SHA2_512
        } else {
            0
        };
        body.extend(flags.to_be_bytes());
        let (kind, reply) = self.call(SIGN_REQUEST, &body)?;
        match kind {
            SIGN_RESPONSE => {}
            FAILURE => {
                return Err(format!(
                    "the ssh-agent refused to sign with {} (not its key, or not confirmed)",
                    crate::fingerprint(key)
                ))
            }
            other => return Err(format!("ssh-agent: unexpected reply {other}")),
        }
        let sig_blob = Reader(&reply).string()?;
        let sig = Signature::try_from(sig_blob)
            .map_err(|e| format!("ssh-agent: cannot read its signature: {e}"))?;
        let sshsig = SshSig::new(key.key_data().clone(), NAMESPACE, HashAlg::Sha512, sig)
            .map_err(|e| e.to_string())?;
        crate::signature::armor(&sshsig)
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) -> Result<(), String> {
    let len = u32::try_from(s.len()).map_err(|_| "ssh-agent: field too large")?;
    out.extend(len.to_be_bytes());
    out.extend(s);
    Ok(())
}

/// Reads SSH wire values from a reply.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("ssh-agent: a reply ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}
