//! The safe unpacker: each kind of unsafe archive is refused with a clear error, nothing is
//! written outside the target, and nothing is left half-written.

use hpcsera_agent::unpack::{unpack_tar_gz, UnpackError, UnpackLimits};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const LIMITS: UnpackLimits = UnpackLimits {
    max_entries: 100,
    max_bytes: 1024 * 1024,
};

/// One entry of a test archive, written with raw header fields so that malicious names get
/// through (the tar crate's own setters refuse them).
enum E<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Special(&'a str, tar::EntryType),
    Zeros(&'a str, u64),
    /// An extension header (GNU long name or link, PAX) of `size` bytes of `fill`.
    Meta(tar::EntryType, u64, u8),
    /// A PAX extension header with these records, then a file.
    Pax(&'a [(&'a str, &'a [u8])], &'a str, &'a [u8]),
}

fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_old();
    let raw = h.as_old_mut();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

fn archive(dir: &Path, entries: &[E]) -> PathBuf {
    let path = dir.join(format!("a-{}.tar.gz", uuid::Uuid::new_v4().simple()));
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    for e in entries {
        match e {
            E::File(name, data, mode) => {
                let mut h = header(name, tar::EntryType::Regular, data.len() as u64, *mode);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            E::Dir(name) => {
                let mut h = header(name, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Symlink(name, target) | E::Hardlink(name, target) => {
                let kind = if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = header(name, kind, 0, 0o777);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Special(name, kind) => {
                let mut h = header(name, *kind, 0, 0o644);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            E::Zeros(name, size) => {
                let mut h = header(name, tar::EntryType::Regular, *size, 0o644);
                h.set_cksum();
                b.append(&h, std::io::repeat(0).take(*size)).unwrap();
            }
            E::Meta(kind, size, fill) => {
                let mut h = tar::Header::new_gnu();
                h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
                h.set_entry_type(*kind);
                h.set_size(*size);
                h.set_mode(0o644);
                h.set_mtime(0);
                h.set_cksum();
                // Streamed: never held in memory.
                b.append(&h, std::io::repeat(*fill).take(*size)).unwrap();
            }
            E::Pax(records, name, data) => {
                b.append_pax_extensions(records.iter().copied()).unwrap();
                let mut h = header(name, tar::EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
        }
    }
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap();
    path
}

use std::io::Read;

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    /// `<base>/work/job/code/p`: where the code goes.
    target: PathBuf,
    /// A directory next to the work dir that must stay untouched.
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().to_path_buf();
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "keep").unwrap();
    let code = base.join("work/job/code");
    std::fs::create_dir_all(&code).unwrap();
    Fixture {
        target: code.join("p"),
        outside,
        base,
        _tmp: tmp,
    }
}

/// All paths below `dir` (not following links).
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            out.push(
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Unpacks and expects a refusal: the target does not exist, nothing is left next to it,
/// and the outside directory and the rest of the tree are as before.
fn refused(entries: &[E], limits: &UnpackLimits) -> UnpackError {
    let f = fixture();
    let archives = f.base.join("archives");
    std::fs::create_dir_all(&archives).unwrap();
    let a = archive(&archives, entries);
    let before = listing(&f.base);
    let err = unpack_tar_gz(&a, &f.target, limits).expect_err("must be refused");
    assert!(!f.target.exists(), "target exists after a refusal");
    assert_eq!(
        listing(&f.base),
        before,
        "something was written or left behind"
    );
    assert_eq!(
        std::fs::read_to_string(f.outside.join("keep.txt")).unwrap(),
        "keep"
    );
    err
}

fn assert_unsafe(e: &UnpackError, path: &str, words: &str) {
    match e {
        UnpackError::Unsafe { path: p, problem } => {
            assert_eq!(p, path);
            assert!(problem.contains(words), "{problem}");
        }
        other => panic!("expected an unsafe entry error, got {other}"),
    }
    assert!(e.to_string().contains(path));
}

#[test]
fn a_good_archive_unpacks_with_normalised_modes() {
    let f = fixture();
    let a = archive(
        &f.base,
        &[
            E::Dir("src/"),
            E::File("src/run.sh", b"#!/bin/sh\necho hi\n", 0o4777),
            E::File("src/data.txt", b"data", 0o666),
            E::Symlink("src/link", "data.txt"),
            E::Symlink("top", "src/sub/.."),
            E::Dir("src/sub"),
            E::Hardlink("src/hard", "src/data.txt"),
            E::File("./dotted.txt", b"x", 0o600),
        ],
    );
    let stats = unpack_tar_gz(&a, &f.target, &LIMITS).unwrap();
    assert_eq!(stats.entries, 8);
    let t = &f.target;
    assert_eq!(std::fs::read_to_string(t.join("src/link")).unwrap(), "data");
    assert_eq!(std::fs::read_to_string(t.join("src/hard")).unwrap(), "data");
    let mode = |p: &str| std::fs::metadata(t.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("src/run.sh"), 0o700);
    assert_eq!(mode("src/data.txt"), 0o600);
    assert_eq!(mode("dotted.txt"), 0o600);
    assert_eq!(mode("src"), 0o700);
    // Nothing besides the target next to it.
    assert_eq!(listing(t.parent().unwrap())[0], "p");
    // A second unpack into the same target is refused (the first is complete).
    assert!(matches!(
        unpack_tar_gz(&a, &f.target, &LIMITS),
        Err(UnpackError::Exists(_))
    ));
}

#[test]
fn absolute_paths_are_refused() {
    let f = fixture();
    let evil = f.outside.join("abs.txt");
    let name = evil.to_str().unwrap().to_string();
    let e = refused(
        &[E::File("ok.txt", b"1", 0o644), E::File(&name, b"x", 0o644)],
        &LIMITS,
    );
    assert_unsafe(&e, &name, "absolute");
    assert!(!evil.exists());
}

#[test]
fn dot_dot_is_refused() {
    for name in ["../../../outside/evil.txt", "a/../../evil.txt", ".."] {
        let e = refused(
            &[
                E::Dir("a/"),
                E::File("a/ok", b"1", 0o644),
                E::File(name, b"x", 0o644),
            ],
            &LIMITS,
        );
        assert_unsafe(&e, name, "'..'");
    }
}

#[test]
fn symlinks_pointing_outside_are_refused() {
    let e = refused(&[E::Symlink("esc", "../../../outside")], &LIMITS);
    assert_unsafe(&e, "esc", "points outside");
    let e = refused(&[E::Symlink("etc", "/etc")], &LIMITS);
    assert_unsafe(&e, "etc", "absolute");
    // Each link alone stays inside; the chain escapes.
    let e = refused(
        &[
            E::Dir("d1/d2/"),
            E::Symlink("d1/d2/link", "../.."),
            E::Symlink("t", "d1/d2/link/.."),
        ],
        &LIMITS,
    );
    assert_unsafe(&e, "t", "outside");
    // Writing through a symlink, even one pointing inside, is refused.
    let e = refused(
        &[
            E::Dir("d/"),
            E::Symlink("s", "d"),
            E::File("s/x", b"x", 0o644),
        ],
        &LIMITS,
    );
    assert_unsafe(&e, "s/x", "symlink");
    let e = refused(&[E::Symlink("dangling", "nothing-here")], &LIMITS);
    assert_unsafe(&e, "dangling", "dangling");
}

#[test]
fn hard_links_pointing_outside_are_refused() {
    let e = refused(&[E::Hardlink("h", "../../../outside/keep.txt")], &LIMITS);
    assert_unsafe(&e, "h", "outside");
    let e = refused(&[E::Hardlink("h", "/etc/passwd")], &LIMITS);
    assert_unsafe(&e, "h", "outside");
    let e = refused(&[E::Hardlink("h", "not-there")], &LIMITS);
    assert_unsafe(&e, "h", "not a file");
}

#[test]
fn device_files_and_fifos_are_refused() {
    let e = refused(
        &[
            E::File("ok", b"1", 0o644),
            E::Special("dev", tar::EntryType::Char),
        ],
        &LIMITS,
    );
    assert_unsafe(&e, "dev", "device");
    let e = refused(&[E::Special("blk", tar::EntryType::Block)], &LIMITS);
    assert_unsafe(&e, "blk", "device");
    let e = refused(&[E::Special("fifo", tar::EntryType::Fifo)], &LIMITS);
    assert_unsafe(&e, "fifo", "FIFO");
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<E> = names.iter().map(|n| E::File(n, b"x", 0o644)).collect();
    let limits = UnpackLimits {
        max_entries: 10,
        max_bytes: LIMITS.max_bytes,
    };
    let e = refused(&entries, &limits);
    assert!(matches!(e, UnpackError::TooManyEntries(10)), "{e}");
    assert!(e.to_string().contains("more than 10 entries"));
}

#[test]
fn decompression_bombs_are_cut_off() {
    // 64 MiB of zeros compress to a few KiB; the limit is 1 MiB.
    let f = fixture();
    let a = archive(&f.base, &[E::Zeros("bomb", 64 * 1024 * 1024)]);
    assert!(std::fs::metadata(&a).unwrap().len() < 512 * 1024);
    let e = refused(&[E::Zeros("bomb", 64 * 1024 * 1024)], &LIMITS);
    assert!(matches!(e, UnpackError::TooLarge(_)), "{e}");
    assert!(e.to_string().contains("unpacks to more than"));
    // The limit counts all files together.
    let e = refused(
        &[E::Zeros("a", 600 * 1024), E::Zeros("b", 600 * 1024)],
        &LIMITS,
    );
    assert!(matches!(e, UnpackError::TooLarge(_)), "{e}");
}

#[test]
fn garbage_is_an_archive_error() {
    let f = fixture();
    let a = f.base.join("garbage.tar.gz");
    std::fs::write(&a, b"\x1f\x8bnot really gzip").unwrap();
    let e = unpack_tar_gz(&a, &f.target, &LIMITS).unwrap_err();
    assert!(matches!(e, UnpackError::Archive(_)), "{e}");
    assert!(!f.target.exists());
    assert_eq!(listing(f.target.parent().unwrap()), Vec::<String>::new());
}

/// The peak resident memory of this process so far (nextest runs each test in a process of
/// its own).
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn a_512_mib_long_name_is_refused_at_its_header_without_reading_it() {
    let f = fixture();
    let a = archive(
        &f.base,
        &[
            E::Meta(tar::EntryType::GNULongName, 512 * 1024 * 1024, b'a'),
            E::File("x", b"x", 0o644),
        ],
    );
    assert!(std::fs::metadata(&a).unwrap().len() < 2 * 1024 * 1024);
    let before = peak_rss_bytes();
    let started = std::time::Instant::now();
    let limits = UnpackLimits {
        max_entries: 100,
        max_bytes: 10 * 1024 * 1024,
    };
    let err = unpack_tar_gz(&a, &f.target, &limits).unwrap_err();
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(msg.len() < 300, "a short message: {} bytes", msg.len());
    assert!(msg.contains("long name"), "{msg}");
    assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    let peak = peak_rss_bytes();
    assert!(
        peak < 100 * 1024 * 1024,
        "peak RSS {} MB (before: {} MB)",
        peak >> 20,
        before >> 20
    );
    assert!(!f.target.exists());
}

#[test]
fn large_long_link_and_pax_headers_are_refused_too() {
    for kind in [
        tar::EntryType::GNULongLink,
        tar::EntryType::XHeader,
        tar::EntryType::XGlobalHeader,
    ] {
        let f = fixture();
        let a = archive(
            &f.base,
            &[
                E::Meta(kind, 8 * 1024 * 1024, b'a'),
                E::File("x", b"x", 0o644),
            ],
        );
        let limits = UnpackLimits {
            max_entries: 100,
            max_bytes: 100 * 1024 * 1024,
        };
        let err = unpack_tar_gz(&a, &f.target, &limits).unwrap_err();
        assert!(err.to_string().len() < 300, "{kind:?}: {err}");
        assert!(err.to_string().contains("header of"), "{kind:?}: {err}");
        assert!(!f.target.exists());
    }
}

#[test]
fn extension_headers_count_against_the_size_limit() {
    let f = fixture();
    let comment = vec![b'c'; 60 * 1024];
    let records: &[(&str, &[u8])] = &[("comment", &comment)];
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let entries: Vec<E> = names.iter().map(|n| E::Pax(records, n, b"x")).collect();
    let a = archive(&f.base, &entries);
    // 20 × 60 KiB of headers and 20 bytes of content: more than 1 MiB in all.
    assert!(matches!(
        unpack_tar_gz(&a, &f.target, &LIMITS),
        Err(UnpackError::TooLarge(_))
    ));
    assert!(!f.target.exists());
}

#[test]
fn long_names_of_gnu_and_pax_archives_still_unpack() {
    let f = fixture();
    let long = format!("{}/file.txt", "d".repeat(150));
    let path = f.base.join("long.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        // A GNU long name entry, as GNU tar writes it.
        b.append_data(&mut h, &long, &b"gnu!"[..]).unwrap();
        b.append_pax_extensions([("path", format!("pax/{long}").as_bytes())])
            .unwrap();
        let mut h = header("short", tar::EntryType::Regular, 4, 0o644);
        h.set_cksum();
        b.append(&h, &b"pax!"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let stats = unpack_tar_gz(&path, &f.target, &LIMITS).unwrap();
    assert_eq!(stats.entries, 2);
    assert_eq!(std::fs::read(f.target.join(&long)).unwrap(), b"gnu!");
    assert_eq!(
        std::fs::read(f.target.join(format!("pax/{long}"))).unwrap(),
        b"pax!"
    );
    assert!(!f.target.join("short").exists());
}

#[test]
fn a_pax_size_record_is_refused() {
    let f = fixture();
    let records: &[(&str, &[u8])] = &[("size", b"1")];
    let a = archive(&f.base, &[E::Pax(records, "x", b"x")]);
    let err = unpack_tar_gz(&a, &f.target, &LIMITS).unwrap_err();
    assert!(err.to_string().contains("size"), "{err}");
}
