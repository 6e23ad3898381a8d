//! `hpcsera login` / `logout` and where the client finds its server and token:
//! `HPCSERA_URL` / `HPCSERA_TOKEN` first, then `$XDG_CONFIG_HOME/hpcsera/config.toml`
//! (or `~/.config/hpcsera/config.toml`), a file of mode 0600 written atomically.

use super::{exit, CliError, CliResult};
use clap::Args;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://hpc.example.org (default: HPCSERA_URL or the stored one).
    #[arg(long)]
    url: Option<String>,
    /// Read the token from stdin (else it is asked for on the terminal, without echo).
    #[arg(long)]
    token_stdin: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    token: Option<String>,
}

/// `$XDG_CONFIG_HOME/hpcsera/config.toml` or `~/.config/hpcsera/config.toml`.
pub fn config_path() -> CliResult<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("hpcsera/config.toml"));
    }
    match std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".config/hpcsera/config.toml")),
        None => Err(CliError::usage(
            "neither XDG_CONFIG_HOME nor HOME is set: cannot find the config file",
        )),
    }
}

fn load(path: &Path) -> CliResult<FileConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(e) => {
            return Err(CliError::other(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} holds a token and others may read it: chmod 600 it",
                path.display()
            );
        }
    }
    toml::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{} is not a valid config file: {}",
            path.display(),
            e.message()
        ))
    })
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The server URL and token to use: the environment overrides the config file.
pub fn resolve() -> CliResult<(String, String)> {
    let (env_url, env_token) = (env("HPCSERA_URL"), env("HPCSERA_TOKEN"));
    let file = if env_url.is_some() && env_token.is_some() {
        FileConfig::default()
    } else {
        load(&config_path()?)?
    };
    let url = env_url.or(file.url).ok_or_else(|| {
        CliError::usage("no server URL: run `hpcsera login --url URL`, or set HPCSERA_URL")
    })?;
    let token = env_token
        .or(file.token)
        .ok_or_else(|| CliError::usage("no token: run `hpcsera login`, or set HPCSERA_TOKEN"))?;
    Ok((url, token))
}

/// A TOML basic string: JSON string escapes are valid TOML for everything a URL or a token
/// holds (the SDK refuses tokens with other characters than printable ASCII).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Writes the config file atomically with mode 0600 (a temporary file in the same directory,
/// synced, then renamed over the old one).
fn write_config(path: &Path, url: &str, token: &str) -> CliResult<()> {
    let dir = path
        .parent()
        .ok_or_else(|| CliError::other("the config path has no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::other(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".config.toml.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let text = format!(
        "# Written by `hpcsera login`. Keep it private (mode 0600).\nurl = {}\ntoken = {}\n",
        toml_string(url),
        toml_string(token)
    );
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CliError::other(format!("cannot write {}: {e}", path.display()))
    })
}

/// Reads a line from the terminal without echoing it.
fn read_secret(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd and we check the result.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let saved = if unsafe { libc::tcgetattr(fd, &mut term) } == 0 {
        let old = term;
        term.c_lflag &= !libc::ECHO;
        // SAFETY: a valid termios from tcgetattr with ECHO cleared.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
        Some(old)
    } else {
        None
    };
    let mut line = String::new();
    let r = std::io::stdin().read_line(&mut line);
    if let Some(old) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &old) };
        eprintln!();
    }
    r.map(|_| line.trim().to_string())
}

pub async fn login(a: LoginArgs) -> CliResult {
    let path = config_path()?;
    let stored = load(&path).unwrap_or_default();
    let url = a
        .url
        .or_else(|| env("HPCSERA_URL"))
        .or(stored.url)
        .ok_or_else(|| CliError::usage("give the server's URL with --url"))?;
    let token = if a.token_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::other(format!("cannot read the token from stdin: {e}")))?;
        s.trim().to_string()
    } else if std::io::stdin().is_terminal() {
        read_secret(&format!("Token for {url}: "))
            .map_err(|e| CliError::other(format!("cannot read the token: {e}")))?
    } else {
        return Err(CliError::usage(
            "stdin is not a terminal: give the token on stdin with --token-stdin",
        ));
    };
    if token.is_empty() {
        return Err(CliError::usage("the token is empty"));
    }
    let client = hpcsera_client::Client::new(&url, &token)?;
    let me = client.whoami().await?;
    write_config(&path, &url, &token)?;
    eprintln!(
        "logged in to {} as {} (project {}); saved in {}",
        client.base_url().trim_end_matches('/'),
        me.user,
        me.project,
        path.display()
    );
    if env("HPCSERA_URL").is_some() || env("HPCSERA_TOKEN").is_some() {
        eprintln!("note: HPCSERA_URL/HPCSERA_TOKEN are set and take precedence over the file");
    }
    Ok(exit::OK)
}

pub fn logout() -> CliResult {
    let path = config_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => eprintln!("logged out: removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("not logged in ({} does not exist)", path.display())
        }
        Err(e) => {
            return Err(CliError::other(format!(
                "cannot remove {}: {e}",
                path.display()
            )))
        }
    }
    if env("HPCSERA_TOKEN").is_some() {
        eprintln!("note: HPCSERA_TOKEN is still set in this environment");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn toml_strings_round_trip() {
        for s in ["http://h:8080", "hpcs_abc-DEF_123", "a\"b\\c"] {
            let text = format!("url = {}\n", super::toml_string(s));
            let c: super::FileConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.url.as_deref(), Some(s));
        }
    }
}
