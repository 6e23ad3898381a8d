//! What the code API, the web UI and the admin CLI share about code bundles: the bounded
//! listing of a bundle's files, and a decision on a bundle with its file retention.
//!
//! The listing reads the stored tar.gz as a stream of raw tar entries: GNU long names and PAX
//! headers are read only up to [`MAX_EXTENSION_BYTES`] each, at most [`MAX_LISTED_FILES`]
//! entries are listed and at most [`MAX_SCANNED_BYTES`] of content decompressed (skipped, never
//! kept), so a listing holds a bounded amount of memory and work however the archive is made.
//! This module must never unpack a bundle, write anything of it to disk, or run it; names are
//! shown with their control characters escaped, cut to [`MAX_SHOWN_PATH_BYTES`].

use hpcsera_api_types::{escape_controls, CodeFile, CodeFileList};
use hpcsera_store::{CodeDecision, Store, StoreError};
use std::io::Read;
use std::path::Path;

/// Most entries a listing shows.
pub const MAX_LISTED_FILES: usize = 1000;
/// Most bytes of entry content a listing decompresses (and skips) before it stops.
pub const MAX_SCANNED_BYTES: u64 = 256 * 1024 * 1024;
/// Largest GNU long-name or PAX header read (Linux paths have at most 4096 bytes).
pub const MAX_EXTENSION_BYTES: u64 = 64 * 1024;
/// Longest name shown, in bytes (then `…`).
pub const MAX_SHOWN_PATH_BYTES: usize = 1024;

/// Why a bundle's files cannot be listed at all.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The bundle's bytes are no longer kept (a rejected bundle, or pruned).
    #[error("the bytes of this code bundle are no longer kept")]
    Gone,
    #[error("cannot read the code bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// The files of the bundle stored at `path`, read on the blocking pool.
pub async fn list_bundle_files(path: &Path) -> Result<CodeFileList, ListError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
        Ok(f) => Ok(list_archive(std::io::BufReader::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ListError::Gone),
        Err(e) => Err(ListError::Io(e)),
    })
    .await
    .map_err(|e| ListError::Io(std::io::Error::other(e.to_string())))?
}

/// Extension headers seen before the entry they describe.
#[derive(Default)]
struct Names {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

/// Lists a tar.gz read from `reader`; a problem ends the listing and is named in it.
pub fn list_archive(reader: impl Read) -> CodeFileList {
    let mut out = CodeFileList {
        files: Vec::new(),
        truncated: false,
        problem: None,
    };
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    if let Err(e) = walk(&mut ar, &mut out) {
        out.problem = Some(e);
    }
    out
}

fn walk<R: Read>(ar: &mut tar::Archive<R>, out: &mut CodeFileList) -> Result<(), String> {
    let text = |e: std::io::Error| e.to_string();
    // Raw entries: the tar crate would read long names and PAX headers into memory whatever
    // their size; here they are read by `extension` after their size is checked.
    let entries = ar.entries().map_err(text)?.raw(true);
    let mut scanned = 0u64;
    let mut names = Names::default();
    for entry in entries {
        let mut entry = entry.map_err(text)?;
        let header_of_next = is_extension(entry.header().entry_type());
        if header_of_next && entry.size() > MAX_EXTENSION_BYTES {
            return Err(format!(
                "an extension header of {} bytes (at most {MAX_EXTENSION_BYTES} are read)",
                entry.size()
            ));
        }
        // The content is decompressed when the walk moves past it: counted before it is.
        scanned = scanned.saturating_add(entry.size()).saturating_add(512);
        if scanned > MAX_SCANNED_BYTES {
            out.truncated = true;
            return Ok(());
        }
        if header_of_next {
            extension(&mut entry, &mut names)?;
            continue;
        }
        if out.files.len() == MAX_LISTED_FILES {
            out.truncated = true;
            return Ok(());
        }
        out.files.push(describe(&entry, std::mem::take(&mut names)));
    }
    Ok(())
}

fn is_extension(kind: tar::EntryType) -> bool {
    matches!(
        kind,
        tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink
            | tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader
    )
}

/// Reads a GNU long name or link or a PAX header (its size checked already) into `names`.
fn extension<R: Read>(entry: &mut tar::Entry<'_, R>, names: &mut Names) -> Result<(), String> {
    let kind = entry.header().entry_type();
    let size = entry.size().min(MAX_EXTENSION_BYTES);
    let mut data = Vec::with_capacity(size as usize);
    entry
        .take(MAX_EXTENSION_BYTES)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    match kind {
        tar::EntryType::GNULongName => names.path = Some(without_nul(data)),
        tar::EntryType::GNULongLink => names.link = Some(without_nul(data)),
        tar::EntryType::XHeader => {
            for ext in tar::PaxExtensions::new(&data).flatten() {
                match ext.key_bytes() {
                    b"path" => names.path = Some(ext.value_bytes().to_vec()),
                    b"linkpath" => names.link = Some(ext.value_bytes().to_vec()),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn without_nul(mut b: Vec<u8>) -> Vec<u8> {
    while b.last() == Some(&0) {
        b.pop();
    }
    b
}

/// A name for people: lossy UTF-8, controls escaped, at most [`MAX_SHOWN_PATH_BYTES`].
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = escape_controls(&text);
    let cut = hpcsera_api_types::cut_to_bytes(&text, MAX_SHOWN_PATH_BYTES);
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut.to_string()
    }
}

fn describe<R: Read>(entry: &tar::Entry<'_, R>, names: Names) -> CodeFile {
    let h = entry.header();
    let kind = match h.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => "file",
        tar::EntryType::Directory => "dir",
        tar::EntryType::Symlink => "symlink",
        tar::EntryType::Link => "hardlink",
        tar::EntryType::Char => "char",
        tar::EntryType::Block => "block",
        tar::EntryType::Fifo => "fifo",
        _ => "other",
    };
    let path = names.path.unwrap_or_else(|| h.path_bytes().into_owned());
    let link = names
        .link
        .or_else(|| h.link_name_bytes().map(|b| b.into_owned()));
    CodeFile {
        path: shown(&path),
        kind: kind.to_string(),
        size: if kind == "file" { entry.size() } else { 0 },
        mode: format!("{:04o}", h.mode().unwrap_or(0) & 0o7777),
        link_target: link
            .filter(|_| matches!(kind, "symlink" | "hardlink"))
            .map(|l| shown(&l)),
    }
}

/// Approves or rejects bundle `id` of `project` as `user` (a member of the project), then
/// applies the retention rule: a rejected bundle's file goes at once unless another project
/// keeps those bytes (checked again under the digest's lock). Waking the agents and event
/// readers is the caller's: only a caller inside the server can.
pub async fn decide_bundle(
    store: &Store,
    code_dir: &Path,
    project: &str,
    id: &str,
    user: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<CodeDecision, StoreError> {
    let d = store
        .decide_bundle(project, id, user, approve, reason)
        .await?;
    if d.delete_file {
        let path = crate::config::code_file_path(code_dir, id);
        store.delete_code_file_if_unkept(id, &path).await?;
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn lists_names_kinds_sizes_modes_and_links() {
        let gz = tar_gz(|b| {
            let mut d = tar::Header::new_gnu();
            d.set_entry_type(tar::EntryType::Directory);
            d.set_mode(0o755);
            d.set_size(0);
            b.append_data(&mut d, "bin/", std::io::empty()).unwrap();
            file(b, "bin/run.sh", 0o4755, b"#!/bin/sh\necho hi\n");
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            l.set_mode(0o777);
            b.append_link(&mut l, "latest", "bin/run.sh").unwrap();
            let long = format!("{}/x.txt", "d".repeat(300));
            file(b, &long, 0o644, b"x");
            file(b, "evil\u{202e}txt.sh\x1b[2J", 0o644, b"");
        });
        let list = list_archive(&gz[..]);
        assert_eq!(list.problem, None);
        assert!(!list.truncated);
        let got: Vec<(&str, &str, u64, &str, Option<&str>)> = list
            .files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.kind.as_str(),
                    f.size,
                    f.mode.as_str(),
                    f.link_target.as_deref(),
                )
            })
            .collect();
        assert_eq!(got[0], ("bin/", "dir", 0, "0755", None));
        assert_eq!(got[1], ("bin/run.sh", "file", 18, "4755", None));
        assert_eq!(got[2], ("latest", "symlink", 0, "0777", Some("bin/run.sh")));
        assert_eq!(got[3].0.len(), 306, "the GNU long name is read");
        assert_eq!(
            got[4].0, "evil\\u{202e}txt.sh\\x1b[2J",
            "controls are shown"
        );
    }

    #[test]
    fn stops_at_the_entry_limit_and_names_a_broken_archive() {
        let gz = tar_gz(|b| {
            for i in 0..MAX_LISTED_FILES + 5 {
                file(b, &format!("f{i}"), 0o644, b"");
            }
        });
        let list = list_archive(&gz[..]);
        assert_eq!(list.files.len(), MAX_LISTED_FILES);
        assert!(list.truncated);

        let list = list_archive(&b"not gzip at all"[..]);
        assert!(list.files.is_empty());
        assert!(list.problem.is_some());

        let mut cut = tar_gz(|b| file(b, "a", 0o644, &[7u8; 100_000]));
        cut.truncate(cut.len() / 2);
        assert!(list_archive(&cut[..]).problem.is_some());
    }

    #[test]
    fn an_oversized_long_name_is_refused_before_it_is_read() {
        // A GNU long-name header that claims 512 MiB: refused from its size, nothing read.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(512 * 1024 * 1024);
        h.set_path("././@LongLink").unwrap();
        h.set_cksum();
        let mut tar = h.as_bytes().to_vec();
        tar.extend_from_slice(&[b'a'; 4096]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let list = list_archive(&gz[..]);
        assert!(list.files.is_empty());
        assert!(
            list.problem
                .as_deref()
                .unwrap_or("")
                .contains("extension header"),
            "{:?}",
            list.problem
        );
    }

    #[test]
    fn content_past_the_scan_limit_is_not_decompressed() {
        // Sizes as the headers claim them: the walk stops before skipping past the limit.
        let gz = tar_gz(|b| {
            file(b, "small", 0o644, b"x");
            let mut h = tar::Header::new_gnu();
            h.set_size(MAX_SCANNED_BYTES + 1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_path("huge").unwrap();
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        });
        let list = list_archive(&gz[..]);
        assert_eq!(list.files.len(), 1);
        assert!(list.truncated);
    }
}
