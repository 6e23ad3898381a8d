//! Output: a job's stdout and stderr streams (the concatenation of its sub-jobs' files)
//! sent to the server by offset, at most [`OUTPUT_CHUNK`] bytes per stream and call; after a
//! restart they continue at the server's length.
//!
//! Files are read only through [`super::files::open_inside`]: a file that is a link, or that
//! leads out of the job directory, is never read (it is named in the job's end message).
//! This module must never send bytes the server has again at a later offset.

use super::agent::Agent;
use super::files::{is_refusal, open_inside};
use super::job::{Running, Stream};
use hpcsera_api_types::OutputStream;
use std::path::{Path, PathBuf};

/// Most output bytes sent per stream and cycle.
const OUTPUT_CHUNK: u64 = 1024 * 1024;

/// Most chunks sent when a job ends (per stream: 64 MiB; the server keeps less).
const DRAIN_CHUNKS: usize = 64;

impl Agent {
    /// Sends what is left of a job's output (before it moves on or ends).
    pub(super) async fn drain_output(&self, run: &mut Running) {
        for _ in 0..DRAIN_CHUNKS {
            if !self.send_output(run).await {
                break;
            }
        }
    }

    /// Sends new output of both streams; true while more may be waiting.
    pub(super) async fn send_output(&self, run: &mut Running) -> bool {
        let mut more = false;
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let s = match stream {
                OutputStream::Stdout => &mut run.out,
                OutputStream::Stderr => &mut run.err,
            };
            if s.truncated {
                continue;
            }
            let (chunk, file_index, new_pos) = match next_chunk(&run.ctx.job_dir, s) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err((index, why)) => {
                    s.refused.insert(index);
                    let name = s.files[index]
                        .0
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    tracing::warn!(job = %run.job.id, file = %name, reason = %why, "output file not read");
                    run.skipped.push(format!("{name} ({why})"));
                    more = true;
                    continue;
                }
            };
            match self
                .client
                .append_output(&run.job.id, stream, s.server_len, &chunk)
                .await
            {
                Ok(len) => {
                    let sent = len.saturating_sub(s.server_len);
                    if sent > chunk.len() as u64 {
                        // The server had more than this agent knew (bytes sent before a
                        // restart): continue at the file position of the server's length,
                        // never send bytes again at a later offset.
                        s.server_len = len;
                        skip_sent(s);
                        more = true;
                        continue;
                    }
                    if sent < chunk.len() as u64 {
                        s.truncated = true;
                    }
                    s.server_len = len;
                    s.files[file_index].1 = new_pos;
                    more |= chunk.len() as u64 >= OUTPUT_CHUNK;
                }
                Err(e) => {
                    tracing::warn!(job = %run.job.id, error = %e, "cannot send output; trying again next cycle");
                    return false;
                }
            }
        }
        more
    }
}

/// The stdout and stderr files of a sub-job.
pub fn output_files(job_dir: &Path, sub_job: &str) -> (PathBuf, PathBuf) {
    (
        job_dir.join(format!("{sub_job}.out")),
        job_dir.join(format!("{sub_job}.err")),
    )
}

/// Marks the first `server_len` bytes of the stream's files as sent (after a restart).
pub(super) fn skip_sent(s: &mut Stream) {
    let mut left = s.server_len;
    for (path, pos) in s.files.iter_mut() {
        let len = std::fs::symlink_metadata(path.as_path())
            .map(|m| m.len())
            .unwrap_or(0);
        let take = left.min(len);
        *pos = take;
        left -= take;
    }
}

/// Unsent bytes of a stream: (bytes, index of the file, its new read position).
type Chunk = (Vec<u8>, usize, u64);

/// The next unsent bytes of a stream: (bytes, index of the file, its new read position).
/// Earlier files are finished before later ones are read, so the order is kept. A file that
/// is a link out of the job directory is `Err((index, why))`: it is never read.
fn next_chunk(job_dir: &Path, s: &Stream) -> Result<Option<Chunk>, (usize, String)> {
    use std::io::{Read, Seek, SeekFrom};
    for (i, (path, pos)) in s.files.iter().enumerate() {
        if s.refused.contains(&i) {
            continue;
        }
        let mut f = match open_inside(job_dir, path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if is_refusal(&e) => return Err((i, e.to_string())),
            Err(_) => return Ok(None),
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= *pos {
            continue;
        }
        if f.seek(SeekFrom::Start(*pos)).is_err() {
            return Ok(None);
        }
        let want = (len - pos).min(OUTPUT_CHUNK);
        let mut buf = Vec::with_capacity(want as usize);
        if f.take(want).read_to_end(&mut buf).is_err() {
            return Ok(None);
        }
        if buf.is_empty() {
            continue;
        }
        let new_pos = pos + buf.len() as u64;
        return Ok(Some((buf, i, new_pos)));
    }
    Ok(None)
}
