//! Reading files of a job directory without following links: the no-follow helpers that
//! output and results go through.
//!
//! A job's processes write its directory and may leave links in it (to another user's
//! files, to the agent's token). These helpers open with `O_NOFOLLOW` and check after
//! opening that the file really is inside the job directory. This module must never open a
//! job's file any other way, and never write.

use std::path::Path;

/// Whether an error of [`open_inside`] is a refusal (a link, or a place outside the job).
pub(super) fn is_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP) || e.kind() == std::io::ErrorKind::PermissionDenied
}

/// Opens a regular file of the job directory for reading without following a symlink at its
/// end (`O_NOFOLLOW`: a link is `ELOOP`), and checks after opening that the file really is
/// inside the job directory (a linked parent directory would lead elsewhere).
pub(super) fn open_inside(job_dir: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let refuse = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} {why}", path.display()),
        )
    };
    if !f.metadata()?.is_file() {
        return Err(refuse("is not a regular file"));
    }
    let root = std::fs::canonicalize(job_dir)?;
    let real = {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
            .or_else(|_| std::fs::canonicalize(path))?
    };
    if !real.starts_with(&root) {
        return Err(refuse("leads out of the job directory"));
    }
    Ok(f)
}

/// Reads a file of the job directory ([`open_inside`]); `None` when it has more than `max`
/// bytes.
pub(super) fn read_inside(
    job_dir: &Path,
    path: &Path,
    max: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = open_inside(job_dir, path)?;
    let mut data = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut data)?;
    Ok((data.len() as u64 <= max).then_some(data))
}
