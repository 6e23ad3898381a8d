//! The file list of a code bundle (`GET /code/{codeId}/files`): what a person reviews before
//! approving, read by the server from the stored archive without unpacking it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One entry of a code bundle's archive, as `GET /code/{codeId}/files` lists it (read from
/// the stored tar.gz; nothing is unpacked or run).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CodeFile {
    /// The entry's path as the archive names it (at most 1024 bytes shown, then `…`).
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, or another tar type (`char`, `block`, `fifo`,
    /// `other`) that the agent refuses to unpack.
    pub kind: String,
    /// Bytes of content (0 for anything but a file).
    pub size: u64,
    /// Permission bits as four octal digits, e.g. `0755`.
    pub mode: String,
    /// Where a symlink or hard link points.
    pub link_target: Option<String>,
}

/// The entries of a code bundle, in archive order, at most `limit` of them.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CodeFileList {
    pub files: Vec<CodeFile>,
    /// The listing stopped early: more entries than the limit, or more content than the
    /// server reads for a listing. `files` is then a prefix of the archive.
    pub truncated: bool,
    /// Why the archive could not be read to its end (not gzip, a broken tar, an oversized
    /// extension header); `files` holds the entries before the problem.
    pub problem: Option<String>,
}
