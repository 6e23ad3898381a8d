//! Safe unpacking of code bundles (tar.gz) into a job's work directory.
//!
//! A bundle comes from a client; even approved, its archive structure is not trusted:
//!
//! - entry paths must be relative and plain (no absolute paths, no `..`);
//! - nothing is ever written through a symlink (an entry whose parent is a symlink is refused);
//! - symlinks must be relative and resolve inside the directory (checked by resolving every
//!   link after unpacking; a dangling link is refused too);
//! - hard links must name a regular file unpacked before, inside the directory;
//! - device files, FIFOs, sparse files and other special entries are refused;
//! - at most `max_entries` entries and `max_bytes` bytes of file content (decompression
//!   bombs are cut off while they expand, by counting the bytes actually written);
//! - modes are normalised: directories 0700, files 0600 or 0700 (no setuid, nothing for group
//!   or others: the code is the job owner's).
//!
//! Everything is unpacked into a fresh temporary directory next to the target and renamed into
//! place only when the whole archive passed; on any refusal the temporary directory is
//! removed, so nothing is left half-written.
//!
//! This module must never write outside the target directory, follow a link while unpacking,
//! or leave a partly unpacked directory behind.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Limits of one unpacking.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsafe archive entry {path:?}: {problem}")]
    Unsafe { path: String, problem: String },
    #[error("the archive has more than {0} entries")]
    TooManyEntries(u64),
    #[error("the archive unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("the archive has a {kind} header of {size} bytes (at most {MAX_EXTENSION_BYTES})")]
    HeaderTooLarge { kind: &'static str, size: u64 },
    #[error("the target {0} exists already")]
    Exists(PathBuf),
    #[error("cannot read the archive: {0}")]
    Archive(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> UnpackError {
    let context = context.into();
    move |source| UnpackError::Io { context, source }
}

/// Largest GNU long-name or long-link entry and PAX extension header read (each is read into
/// memory; Linux paths have at most 4096 bytes).
pub const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// How much of an entry's path an error message shows.
const SHOWN_PATH_CHARS: usize = 200;

fn unsafe_entry(path: &Path, problem: impl Into<String>) -> UnpackError {
    let full = path.to_string_lossy();
    let mut shown: String = full.chars().take(SHOWN_PATH_CHARS).collect();
    if shown.len() < full.len() {
        shown.push('…');
    }
    UnpackError::Unsafe {
        path: shown,
        problem: problem.into(),
    }
}

/// Extension headers seen before the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none()
            && self.pax_path.is_none()
            && self.long_link.is_none()
            && self.pax_link.is_none()
    }
}

fn without_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

/// Reads an extension header (GNU long name or link, PAX) after checking its size against
/// [`MAX_EXTENSION_BYTES`] and what is left of the size limit (extension headers count
/// against it). Returns `None` for an entry that is not an extension header.
fn read_extension<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    bytes: &mut u64,
    limits: &UnpackLimits,
) -> Result<Option<Vec<u8>>, UnpackError> {
    let kind = entry.header().entry_type();
    let name = match kind {
        tar::EntryType::GNULongName => "GNU long name",
        tar::EntryType::GNULongLink => "GNU long link",
        tar::EntryType::XHeader => "PAX extension",
        tar::EntryType::XGlobalHeader => "PAX global extension",
        _ => return Ok(None),
    };
    let size = entry.size();
    if size > MAX_EXTENSION_BYTES {
        return Err(UnpackError::HeaderTooLarge { kind: name, size });
    }
    *bytes += size;
    if *bytes > limits.max_bytes {
        return Err(UnpackError::TooLarge(limits.max_bytes));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(MAX_EXTENSION_BYTES)
        .read_to_end(&mut data)
        .map_err(|e| UnpackError::Archive(e.to_string()))?;
    Ok(Some(data))
}

/// A plain relative path: only normal components (`.` is dropped). `None` when the path is
/// absolute or has `..`.
fn plain_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Whether a relative symlink target, seen from the link's directory `link_dir` (relative to
/// the root), stays inside the root when resolved lexically.
fn link_target_inside(link_dir: &Path, target: &Path) -> bool {
    let mut depth: Vec<&std::ffi::OsStr> = link_dir
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in target.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Refuses to go through a symlink: every existing ancestor of `rel` below `root` must be a
/// real directory.
fn check_no_symlink_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_entry(rel, "its path goes through a symlink"))
            }
            Ok(m) if !m.is_dir() => return Err(unsafe_entry(rel, "its parent is not a directory")),
            Ok(_) => {}
            Err(_) => return Ok(()), // does not exist yet: created as a real directory
        }
    }
    Ok(())
}

fn make_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    check_no_symlink_parents(root, rel)?;
    if let Some(parent) = rel.parent() {
        if !parent.as_os_str().is_empty() {
            let dir = root.join(parent);
            fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
    }
    Ok(())
}

/// Removes what is at `path` (not following symlinks) so an entry can replace it; a later
/// entry of the same name wins, as with tar. Directories are not replaced.
fn clear(path: &Path, rel: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(unsafe_entry(rel, "a directory of that name exists")),
        Ok(_) => fs::remove_file(path).map_err(io(format!("cannot replace {}", path.display()))),
        Err(_) => Ok(()),
    }
}

/// Unpacks the tar.gz `archive` into the new directory `target` (which must not exist).
pub fn unpack_tar_gz(
    archive: &Path,
    target: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    if fs::symlink_metadata(target).is_ok() {
        return Err(UnpackError::Exists(target.to_path_buf()));
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io(format!("cannot create {}", parent.display())))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "code".into());
    let tmp = parent.join(format!(".{name}.unpack-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir(&tmp).map_err(io(format!("cannot create {}", tmp.display())))?;
    let result = unpack_into(archive, &tmp, limits).and_then(|stats| {
        verify_symlinks(&tmp, &tmp)?;
        Ok(stats)
    });
    match result {
        Ok(stats) => {
            if let Err(e) = fs::rename(&tmp, target) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(io(format!("cannot move the code to {}", target.display()))(
                    e,
                ));
            }
            Ok(stats)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn unpack_into(
    archive: &Path,
    root: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    let file = fs::File::open(archive).map_err(io(format!("cannot open {}", archive.display())))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut stats = UnpackStats {
        entries: 0,
        bytes: 0,
    };
    // Raw entries: the tar crate would read GNU long names and PAX headers into memory
    // whatever their size; here they are checked first (see `read_extension`) and applied
    // to the entry they describe as the crate would (a long name before a PAX path).
    let entries = ar
        .entries()
        .map_err(|e| UnpackError::Archive(e.to_string()))?
        .raw(true);
    let mut pending = Pending::default();
    let mut extensions = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::Archive(e.to_string()))?;
        let kind = entry.header().entry_type();
        if let Some(data) = read_extension(&mut entry, &mut stats.bytes, limits)? {
            extensions += 1;
            if extensions > limits.max_entries {
                return Err(UnpackError::TooManyEntries(limits.max_entries));
            }
            apply_extension(kind, data, &mut pending)?;
            continue;
        }
        let ext = std::mem::take(&mut pending);
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries(limits.max_entries));
        }
        unpack_entry(root, &mut entry, ext, &mut stats, limits)?;
    }
    if !pending.is_empty() {
        return Err(UnpackError::Archive(
            "extension headers at the end describe no entry".into(),
        ));
    }
    Ok(stats)
}

/// Records what an extension header (GNU long name or link, PAX) says about the next entry.
fn apply_extension(
    kind: tar::EntryType,
    data: Vec<u8>,
    pending: &mut Pending,
) -> Result<(), UnpackError> {
    let twice = || UnpackError::Archive("two extension headers of one kind for one entry".into());
    match kind {
        tar::EntryType::GNULongName if pending.long_name.is_some() => return Err(twice()),
        tar::EntryType::GNULongName => pending.long_name = Some(without_nul(data)),
        tar::EntryType::GNULongLink if pending.long_link.is_some() => return Err(twice()),
        tar::EntryType::GNULongLink => pending.long_link = Some(without_nul(data)),
        tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {
            for ext in tar::PaxExtensions::new(&data) {
                let ext = ext.map_err(|e| UnpackError::Archive(format!("bad PAX header: {e}")))?;
                match ext.key_bytes() {
                    // The crate's raw entries do not apply a PAX size: refuse it rather
                    // than read the archive differently from other readers.
                    b"size" => {
                        return Err(UnpackError::Archive(
                            "PAX size records are not supported".into(),
                        ))
                    }
                    k if k.starts_with(b"GNU.sparse") => {
                        return Err(UnpackError::Archive(
                            "sparse entries are not supported".into(),
                        ))
                    }
                    b"path" if kind == tar::EntryType::XHeader => {
                        pending.pax_path = Some(ext.value_bytes().to_vec())
                    }
                    b"linkpath" if kind == tar::EntryType::XHeader => {
                        pending.pax_link = Some(ext.value_bytes().to_vec())
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// One entry of the archive, as the extension headers before it name it.
struct Entry {
    /// The name as in the archive (for messages).
    raw: PathBuf,
    /// The plain relative path it is unpacked to.
    rel: PathBuf,
    link_name: Option<PathBuf>,
}

/// Unpacks one (non-extension) entry below `root`, or refuses it.
fn unpack_entry<R: Read>(
    root: &Path,
    entry: &mut tar::Entry<'_, R>,
    ext: Pending,
    stats: &mut UnpackStats,
    limits: &UnpackLimits,
) -> Result<(), UnpackError> {
    let kind = entry.header().entry_type();
    let raw = bytes_path(
        &ext.long_name
            .or(ext.pax_path)
            .unwrap_or_else(|| entry.header().path_bytes().into_owned()),
    );
    let link_name: Option<PathBuf> = ext
        .long_link
        .or(ext.pax_link)
        .or_else(|| entry.header().link_name_bytes().map(|b| b.into_owned()))
        .map(|b| bytes_path(&b));
    let rel = plain_relative(&raw)
        .ok_or_else(|| unsafe_entry(&raw, "absolute paths and '..' are not allowed"))?;
    if rel.as_os_str().is_empty() {
        if kind.is_dir() {
            return Ok(()); // "./"
        }
        return Err(unsafe_entry(&raw, "an entry needs a name"));
    }
    let e = Entry {
        raw,
        rel,
        link_name,
    };
    match kind {
        tar::EntryType::Directory => make_dir(root, &e),
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            write_file(root, &e, entry, stats, limits)
        }
        tar::EntryType::Symlink => make_symlink(root, &e),
        tar::EntryType::Link => make_hard_link(root, &e),
        tar::EntryType::Char | tar::EntryType::Block => {
            Err(unsafe_entry(&e.raw, "device files are not allowed"))
        }
        tar::EntryType::Fifo => Err(unsafe_entry(&e.raw, "FIFOs are not allowed")),
        other => Err(unsafe_entry(
            &e.raw,
            format!("entries of type {other:?} are not allowed"),
        )),
    }
}

fn make_dir(root: &Path, e: &Entry) -> Result<(), UnpackError> {
    let dest = root.join(&e.rel);
    check_no_symlink_parents(root, &e.rel)?;
    match fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(unsafe_entry(&e.raw, "a file of that name exists")),
        Err(_) => {
            fs::create_dir_all(&dest).map_err(io(format!("cannot create {}", dest.display())))?;
        }
    }
    fs::set_permissions(&dest, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot set the mode of {}", dest.display())))
}

/// Writes a regular file, counting its bytes against `max_bytes` as they are read.
fn write_file<R: Read>(
    root: &Path,
    e: &Entry,
    entry: &mut tar::Entry<'_, R>,
    stats: &mut UnpackStats,
    limits: &UnpackLimits,
) -> Result<(), UnpackError> {
    let dest = root.join(&e.rel);
    make_parents(root, &e.rel)?;
    clear(&dest, &e.raw)?;
    let mode = entry.header().mode().unwrap_or(0o644);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&dest)
        .map_err(io(format!("cannot create {}", dest.display())))?;
    let room = limits.max_bytes.saturating_sub(stats.bytes);
    let mut buf = [0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| UnpackError::Archive(e.to_string()))?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > room {
            return Err(UnpackError::TooLarge(limits.max_bytes));
        }
        out.write_all(&buf[..n])
            .map_err(io(format!("cannot write {}", dest.display())))?;
    }
    stats.bytes += written;
    let mode = if mode & 0o111 != 0 { 0o700 } else { 0o600 };
    fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
        .map_err(io(format!("cannot set the mode of {}", dest.display())))
}

/// The target a link entry names; `missing` when it names none.
fn link_target(e: &Entry, missing: &str) -> Result<PathBuf, UnpackError> {
    e.link_name
        .clone()
        .filter(|t| !t.as_os_str().is_empty())
        .ok_or_else(|| unsafe_entry(&e.raw, missing))
}

/// A symlink whose target stays inside the directory (checked lexically here, and once
/// more after unpacking by `verify_symlinks`).
fn make_symlink(root: &Path, e: &Entry) -> Result<(), UnpackError> {
    let dest = root.join(&e.rel);
    let target = link_target(e, "a symlink without a target")?;
    if target.is_absolute() {
        return Err(unsafe_entry(
            &e.raw,
            format!("symlink to the absolute path {}", target.display()),
        ));
    }
    let link_dir = e.rel.parent().unwrap_or(Path::new(""));
    if !link_target_inside(link_dir, &target) {
        return Err(unsafe_entry(
            &e.raw,
            format!(
                "symlink to {} points outside the directory",
                target.display()
            ),
        ));
    }
    make_parents(root, &e.rel)?;
    clear(&dest, &e.raw)?;
    std::os::unix::fs::symlink(&target, &dest)
        .map_err(io(format!("cannot create the symlink {}", dest.display())))
}

/// A hard link to a regular file unpacked before it, not through a symlink.
fn make_hard_link(root: &Path, e: &Entry) -> Result<(), UnpackError> {
    let dest = root.join(&e.rel);
    let target = link_target(e, "a hard link without a target")?;
    let src_rel = plain_relative(&target).filter(|p| !p.as_os_str().is_empty());
    let Some(src_rel) = src_rel else {
        return Err(unsafe_entry(
            &e.raw,
            format!(
                "hard link to {} points outside the directory",
                target.display()
            ),
        ));
    };
    check_no_symlink_parents(root, &src_rel)
        .map_err(|_| unsafe_entry(&e.raw, "hard link through a symlink"))?;
    let src = root.join(&src_rel);
    match fs::symlink_metadata(&src) {
        Ok(m) if m.file_type().is_file() => {}
        _ => {
            return Err(unsafe_entry(
                &e.raw,
                format!(
                    "hard link to {}, which is not a file unpacked before it",
                    target.display()
                ),
            ))
        }
    }
    make_parents(root, &e.rel)?;
    clear(&dest, &e.raw)?;
    fs::hard_link(&src, &dest).map_err(io(format!("cannot create the link {}", dest.display())))
}

/// Resolves every symlink below `dir`: each must exist and end inside `root` (chains of links
/// can escape where each link alone looks harmless).
fn verify_symlinks(root: &Path, dir: &Path) -> Result<(), UnpackError> {
    let real_root =
        fs::canonicalize(root).map_err(io(format!("cannot resolve {}", root.display())))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(io(format!("cannot read {}", d.display())))?;
        for e in rd {
            let e = e.map_err(io(format!("cannot read {}", d.display())))?;
            let p = e.path();
            let ft = e
                .file_type()
                .map_err(io(format!("cannot stat {}", p.display())))?;
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if ft.is_symlink() {
                match fs::canonicalize(&p) {
                    Ok(real) if real.starts_with(&real_root) => {}
                    Ok(_) => {
                        return Err(unsafe_entry(
                            &rel,
                            "symlink resolves to a place outside the directory",
                        ))
                    }
                    Err(_) => return Err(unsafe_entry(&rel, "dangling symlink")),
                }
            } else if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_link_check() {
        assert!(link_target_inside(Path::new("a/b"), Path::new("../c")));
        assert!(link_target_inside(Path::new("a"), Path::new("..")));
        assert!(!link_target_inside(Path::new("a"), Path::new("../..")));
        assert!(!link_target_inside(Path::new(""), Path::new("../x")));
        assert!(plain_relative(Path::new("/etc/passwd")).is_none());
        assert!(plain_relative(Path::new("a/../../b")).is_none());
        assert_eq!(
            plain_relative(Path::new("./a/b")).as_deref(),
            Some(Path::new("a/b"))
        );
    }
}
