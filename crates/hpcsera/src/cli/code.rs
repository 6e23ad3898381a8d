//! `hpcsera code …`: upload code bundles and look at their approval.
//!
//! `code push DIR` packs the directory as a *reproducible* tar.gz — entries sorted by name,
//! mtime 0, uid/gid 0 without owner names, modes normalised to 0644/0755, a gzip header
//! without time or name, and the tar in *stored* deflate blocks of 65,535 bytes — so the same
//! tree always gives the same digest, whoever packs it, whenever, and with whatever tool:
//! compressed deflate output differs between zlib, zlib-ng and miniz_oxide, stored blocks do
//! not (the Python SDK, `clients/python`, packs the same bytes). The server URL and token come from `HPCSERA_URL` and `HPCSERA_TOKEN`, or
//! from the profile (`--profile`) of the file `hpcsera login` writes, as for the other client
//! commands.

use super::output::clean;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hpcsera_client::Client;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CodeArgs {
    #[command(subcommand)]
    command: CodeCmd,
}

#[derive(Subcommand)]
enum CodeCmd {
    /// Upload a directory (packed reproducibly) or a tar.gz file; prints the digest (the
    /// bundle id) as the last line of stdout.
    Push { path: PathBuf },
    /// A bundle's status: client-side and HPC-side digests, size, decision.
    Status { id: String },
    /// The project's bundles.
    List,
    /// Approve a bundle with your SSH key: shows the digests and the message, asks, signs
    /// (`--sign KEYFILE` or `--ssh-agent`) and uploads the signed approval.
    Approve(super::approve::ApproveArgs),
}

pub async fn run(args: CodeArgs) -> anyhow::Result<()> {
    // The token comes from the environment or the login file, never from the command line,
    // so it never shows in a process list.
    let client = super::client().map_err(|e| anyhow::anyhow!("{}", e.message))?;
    match args.command {
        CodeCmd::Push { path } => {
            let id = push_path(&client, &path).await?;
            if super::json_output() {
                super::print_json(&serde_json::json!({ "id": id }))?;
            } else {
                println!("{id}");
            }
        }
        CodeCmd::Status { id } => {
            let b = client.code_status(&id).await?;
            if super::json_output() {
                return super::print_json(&b);
            }
            println!("id\t{}", b.id);
            println!("status\t{}", b.status);
            println!("size\t{}", b.size);
            println!("uploaded_by\t{}", clean(&b.uploaded_by));
            println!("created_at\t{}", b.created_at);
            println!("client_sha256\t{}", b.id);
            println!(
                "hpc_sha256\t{}",
                b.hpc_sha256.as_deref().unwrap_or("(not reported yet)")
            );
            println!("digests_match\t{}", b.digests_match);
            if let Some(by) = &b.decided_by {
                println!("decided_by\t{}", clean(by));
                println!("decided_at\t{}", b.decided_at.as_deref().unwrap_or("-"));
            }
            if let Some(r) = &b.reason {
                println!("reason\t{}", clean(r));
            }
        }
        CodeCmd::Approve(a) => super::approve::run(&client, a).await?,
        CodeCmd::List => {
            let bundles = client.list_code().await?;
            if super::json_output() {
                return super::print_json(&serde_json::json!({ "bundles": bundles }));
            }
            for b in bundles {
                println!(
                    "{}\t{}\t{}\t{}\thpc={}",
                    b.id,
                    b.status,
                    b.size,
                    b.created_at,
                    b.hpc_sha256.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// Uploads a directory (packed reproducibly) or a tar.gz file; returns the bundle id. For
/// `hpcsera job submit -p code=@DIR`.
pub async fn push_path(client: &Client, path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = if meta.is_dir() {
        tar_gz_dir(path)?
    } else {
        let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if !b.starts_with(&[0x1f, 0x8b]) {
            bail!("{} is not a tar.gz (no gzip header)", path.display());
        }
        b
    };
    let (bundle, created) = client.push_code(&bytes).await?;
    eprintln!(
        "{} code bundle of {} bytes: {}{}",
        if created {
            "uploaded"
        } else {
            "already known:"
        },
        bundle.size,
        bundle.status,
        if bundle.status == hpcsera_client::CodeStatus::PendingApproval {
            " (a member of the project approves it after the site's agent reported its digest)"
        } else {
            ""
        }
    );
    Ok(bundle.id)
}

/// Packs `dir` as a reproducible tar.gz (see the module docs).
pub fn tar_gz_dir(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut entries = Vec::new();
    walk(dir, Path::new(""), &mut entries)?;
    for (rel, full) in entries {
        let meta = std::fs::symlink_metadata(&full)
            .with_context(|| format!("cannot read {}", full.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, format!("{}/", rel.display()), std::io::empty())?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&full)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, &rel, &target)?;
        } else if ft.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if exec { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            let f = std::fs::File::open(&full)
                .with_context(|| format!("cannot read {}", full.display()))?;
            b.append_data(&mut h, &rel, f)?;
        } else {
            bail!(
                "{} is neither a file, a directory nor a symlink; a code bundle cannot hold it",
                full.display()
            );
        }
    }
    Ok(gzip_stored(&b.into_inner()?))
}

/// Most bytes of one stored deflate block (RFC 1951 §3.2.4).
const STORED_BLOCK: usize = 65_535;

/// `data` as one gzip member (RFC 1952) without time, name or flags, OS "unknown", its
/// deflate stream in stored blocks of [`STORED_BLOCK`] bytes (the last one shorter): a byte
/// layout that any implementation reproduces exactly.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / STORED_BLOCK * 5 + 32);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(STORED_BLOCK).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Entries below `root/rel`, depth first, sorted by name (bytes).
fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let r = rel.join(&name);
        let full = root.join(&r);
        let is_dir = std::fs::symlink_metadata(&full)?.is_dir();
        out.push((r.clone(), full));
        if is_dir {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("src/sub")).unwrap();
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.join("src/a.txt"), "a").unwrap();
        std::fs::write(dir.join("src/sub/b.txt"), "b").unwrap();
    }

    fn digest(b: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(b))
    }

    #[test]
    fn same_tree_same_digest_whatever_times_and_modes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        let first = tar_gz_dir(a.path()).unwrap();
        assert_eq!(digest(&first), digest(&tar_gz_dir(a.path()).unwrap()));
        // Another copy, written later, with other mtimes and group/other permission bits.
        std::thread::sleep(Duration::from_millis(20));
        tree(b.path());
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(b.path().join("src/a.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::set_permissions(
            b.path().join("src/a.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(
            b.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        assert_eq!(digest(&first), digest(&tar_gz_dir(b.path()).unwrap()));
        // Content matters.
        std::fs::write(b.path().join("src/a.txt"), "A").unwrap();
        assert_ne!(digest(&first), digest(&tar_gz_dir(b.path()).unwrap()));
    }

    #[test]
    fn stored_gzip_decodes_at_every_size() {
        use std::io::Read;
        for n in [
            0,
            1,
            STORED_BLOCK - 1,
            STORED_BLOCK,
            STORED_BLOCK + 1,
            3 * STORED_BLOCK,
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let gz = gzip_stored(&data);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{n} bytes");
        }
    }

    #[test]
    fn archive_has_no_owners_or_times() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let bytes = tar_gz_dir(a.path()).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            assert_eq!(h.gid().unwrap(), 0);
            assert_eq!(h.username().unwrap().unwrap_or(""), "");
            let mode = h.mode().unwrap();
            assert!(mode == 0o644 || mode == 0o755, "{mode:o}");
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(
            names,
            ["run.sh", "src/", "src/a.txt", "src/sub/", "src/sub/b.txt"]
        );
    }
}
