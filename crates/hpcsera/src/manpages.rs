//! `hpcsera completions SHELL` and `hpcsera man DIR`: shell completions and man pages, both
//! generated from the one CLI definition (clap), so they cannot drift from the flags.
//!
//! Man pages: `hpcsera.1` and one page per subcommand, named by its path
//! (`hpcsera-job-submit.1`), in roff. Nothing here reads or writes anything else.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Prints the completion script for `shell` on stdout (a closed pipe is no error).
pub fn completions(mut cli: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<()> {
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "hpcsera", &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// Writes the man pages into `dir` (created if needed); the files written.
pub fn write_man_pages(cli: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cli = cli;
    cli.build();
    let mut written = Vec::new();
    page(&cli, "hpcsera", dir, &mut written)?;
    Ok(written)
}

/// The page of `cmd` as `name`, then those of its subcommands as `name-sub`.
fn page(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .render(&mut bytes)
        .context("cannot render a man page")?;
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}
