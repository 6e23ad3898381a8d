//! Writing a new private file: created 0600, never through a link (`O_NOFOLLOW`), never over
//! an existing file (`O_EXCL`), synced before it is used. The batch adapter's environment
//! files and the agent's signing key are written this way.
//!
//! This module must never replace or open an existing file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `data` to the new file `path` (a stale one from a crash is removed first).
pub(crate) fn write_new_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data).and_then(|()| f.sync_all())
}
