//! The agent's Ed25519 signing key: created at first start (0600, never replaced), read at
//! every start, its public half shown by `hpcsera agent --show-key` and published with the
//! job types.
//!
//! The file holds comment lines (`#`) and one line of base64: the 32-byte secret seed. A key
//! file that group or others can read is refused, as the token file is.
//!
//! This module must never write the secret anywhere but the key file, nor log it; the
//! [`Signer`]'s `Debug` shows only the public key.

use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey};
use hpcsera_api_types::provenance::{encode_signature, AgentKey};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why the key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the agent key {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the agent key {} is readable or writable by group or others (mode {mode:04o}); \
         run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the agent key {} is not an hpcsera key file: {why}", path.display())]
    Malformed { path: PathBuf, why: String },
}

/// The agent's signing key.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public().to_string())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the key at `path`, creating it (0600) when there is none.
    pub fn load_or_create(path: &Path) -> Result<Signer, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(path) {
            Ok(_) => Signer::read(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
                let signer = Signer {
                    key: SigningKey::from_bytes(&seed),
                };
                match signer.write_new(path) {
                    Ok(()) => Ok(signer),
                    // Made by someone else in between: theirs is the key.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Signer::read(path),
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Reads an existing key file, refusing one others can read.
    pub fn read(path: &Path) -> Result<Signer, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, 4096), &mut text)
            .map_err(io)?;
        let malformed = |why: &str| KeyError::Malformed {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| malformed("no key line"))?;
        let seed: [u8; 32] = B64
            .decode(line)
            .map_err(|_| malformed("the key line is not base64"))?
            .try_into()
            .map_err(|_| malformed("the key is not 32 bytes"))?;
        Ok(Signer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes a new key file (0600); fails with `AlreadyExists` when there is one.
    fn write_new(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let text = format!(
            "# hpcsera agent signing key (Ed25519 seed, base64). Keep it private (0600).\n\
             # Public key: {}\n{}\n",
            self.public(),
            B64.encode(self.key.to_bytes())
        );
        let written = crate::private_file::write_new_private(&tmp, text.as_bytes());
        // A hard link never replaces an existing file: a key is never overwritten.
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        linked
    }

    /// The public key, as `ed25519:<base64>`.
    pub fn public(&self) -> AgentKey {
        AgentKey(self.key.verifying_key().to_bytes())
    }

    /// The base64 Ed25519 signature over exactly `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> String {
        encode_signature(&self.key.sign(bytes).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let a = Signer::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Signer::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let sig = a.sign(b"manifest");
        hpcsera_api_types::provenance::verify_manifest(&b.public(), b"manifest", &sig).unwrap();
        assert!(!format!("{a:?}").contains(&B64.encode(a.key.to_bytes())));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Signer::read(&path),
            Err(KeyError::Permissions { .. })
        ));
    }
}
