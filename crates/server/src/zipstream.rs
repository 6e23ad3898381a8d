//! A ZIP archive written as a stream, one file at a time: entries are *stored* (not
//! compressed), each local header is written with the file's CRC-32 and sizes known (the
//! caller has the file's bytes), and the central directory is written at the end. Only the
//! central directory entries (about 100 bytes a file) are kept, so an archive of many large
//! files is made in the memory of its largest file. ZIP64 records are written when an offset,
//! a size or the number of entries needs them.
//!
//! This module only makes bytes; it must never read files or talk to the store.

/// One file's central directory entry.
struct Entry {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
}

/// Writes a ZIP archive as a sequence of chunks (see the module docs).
pub(crate) struct ZipStream {
    offset: u64,
    entries: Vec<Entry>,
    /// Write ZIP64 records even where they are not needed (tests).
    force_zip64: bool,
}

const U32_MAX: u64 = 0xFFFF_FFFF;
/// General purpose flag bit 11: names are UTF-8.
const UTF8: u16 = 1 << 11;
/// 1980-01-01 00:00 in MS-DOS date format (the time is 0): reproducible archives.
const DOS_DATE: u16 = (1 << 5) | 1;

fn le16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn le32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn le64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
/// `v` as a 32-bit field, or the ZIP64 marker when it does not fit (or ZIP64 is forced).
fn field32(v: u64, zip64: bool) -> u32 {
    if zip64 || v >= U32_MAX {
        U32_MAX as u32
    } else {
        v as u32
    }
}

impl ZipStream {
    pub(crate) fn new() -> ZipStream {
        ZipStream {
            offset: 0,
            entries: Vec::new(),
            force_zip64: false,
        }
    }

    #[cfg(test)]
    fn forcing_zip64() -> ZipStream {
        ZipStream {
            force_zip64: true,
            ..ZipStream::new()
        }
    }

    /// The bytes of one stored file: its local header followed by `data`.
    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> Vec<u8> {
        let size = data.len() as u64;
        let zip64 = self.force_zip64 || size >= U32_MAX;
        let crc = crc32fast::hash(data);
        let mut out = Vec::with_capacity(30 + name.len() + 20 + data.len());
        le32(&mut out, 0x0403_4b50);
        le16(&mut out, if zip64 { 45 } else { 20 });
        le16(&mut out, UTF8);
        le16(&mut out, 0); // stored
        le16(&mut out, 0);
        le16(&mut out, DOS_DATE);
        le32(&mut out, crc);
        le32(&mut out, field32(size, zip64));
        le32(&mut out, field32(size, zip64));
        le16(&mut out, name.len() as u16);
        le16(&mut out, if zip64 { 20 } else { 0 });
        out.extend_from_slice(name.as_bytes());
        if zip64 {
            le16(&mut out, 0x0001);
            le16(&mut out, 16);
            le64(&mut out, size);
            le64(&mut out, size);
        }
        out.extend_from_slice(data);
        self.entries.push(Entry {
            name: name.as_bytes().to_vec(),
            crc,
            size,
            offset: self.offset,
        });
        self.offset += out.len() as u64;
        out
    }

    /// The central directory and the end records.
    pub(crate) fn finish(self) -> Vec<u8> {
        let cd_start = self.offset;
        let mut out = Vec::new();
        for e in &self.entries {
            central_entry(&mut out, e, self.force_zip64);
        }
        let cd_size = out.len() as u64;
        let n = self.entries.len() as u64;
        let zip64 = self.force_zip64 || n >= 0xFFFF || cd_start >= U32_MAX || cd_size >= U32_MAX;
        if zip64 {
            let record_at = cd_start + cd_size;
            le32(&mut out, 0x0606_4b50);
            le64(&mut out, 44);
            le16(&mut out, 45);
            le16(&mut out, 45);
            le32(&mut out, 0);
            le32(&mut out, 0);
            le64(&mut out, n);
            le64(&mut out, n);
            le64(&mut out, cd_size);
            le64(&mut out, cd_start);
            le32(&mut out, 0x0706_4b50);
            le32(&mut out, 0);
            le64(&mut out, record_at);
            le32(&mut out, 1);
        }
        le32(&mut out, 0x0605_4b50);
        le16(&mut out, 0);
        le16(&mut out, 0);
        let count = if zip64 { 0xFFFF } else { n as u16 };
        le16(&mut out, count);
        le16(&mut out, count);
        le32(&mut out, field32(cd_size, zip64));
        le32(&mut out, field32(cd_start, zip64));
        le16(&mut out, 0);
        out
    }
}

/// One central directory header, with a ZIP64 extra field for the values that need it.
fn central_entry(out: &mut Vec<u8>, e: &Entry, force: bool) {
    let big_size = force || e.size >= U32_MAX;
    let big_offset = force || e.offset >= U32_MAX;
    let mut extra = Vec::new();
    if big_size {
        le64(&mut extra, e.size);
        le64(&mut extra, e.size);
    }
    if big_offset {
        le64(&mut extra, e.offset);
    }
    let zip64 = !extra.is_empty();
    le32(out, 0x0201_4b50);
    le16(out, 0x0300 | 45); // made by: Unix
    le16(out, if zip64 { 45 } else { 20 });
    le16(out, UTF8);
    le16(out, 0);
    le16(out, 0);
    le16(out, DOS_DATE);
    le32(out, e.crc);
    le32(out, field32(e.size, big_size));
    le32(out, field32(e.size, big_size));
    le16(out, e.name.len() as u16);
    le16(out, if zip64 { extra.len() as u16 + 4 } else { 0 });
    le16(out, 0);
    le16(out, 0);
    le16(out, 0);
    le32(out, 0o100_644 << 16);
    le32(out, field32(e.offset, big_offset));
    out.extend_from_slice(&e.name);
    if zip64 {
        le16(out, 0x0001);
        le16(out, extra.len() as u16);
        out.extend_from_slice(&extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's zipfile reads the archive back, checks every CRC and prints the names.
    fn python_reads(archive: &[u8]) -> String {
        use std::io::Write;
        let script = "import io,sys,zipfile\nz=zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read()))\n\
                      assert z.testzip() is None\nfor i in z.infolist(): print(i.filename, i.file_size, z.read(i).decode())";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 reads the archive");
        child.stdin.take().unwrap().write_all(archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "python3 could not read the archive");
        String::from_utf8(out.stdout).unwrap()
    }

    fn archive(mut z: ZipStream) -> Vec<u8> {
        let mut bytes = z.file("ro-crate-metadata.json", b"{}");
        bytes.extend(z.file("results/a b/ü.txt", b"hello"));
        bytes.extend(z.file("empty", b""));
        bytes.extend(z.finish());
        bytes
    }

    #[test]
    fn python_reads_what_is_written_with_and_without_zip64() {
        let want = "ro-crate-metadata.json 2 {}\nresults/a b/ü.txt 5 hello\nempty 0 \n";
        assert_eq!(python_reads(&archive(ZipStream::new())), want);
        assert_eq!(python_reads(&archive(ZipStream::forcing_zip64())), want);
    }
}
