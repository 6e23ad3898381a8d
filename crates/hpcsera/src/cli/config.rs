//! Where the client finds its server and token: `HPCSERA_URL` / `HPCSERA_TOKEN` first, then a
//! *profile* of `$XDG_CONFIG_HOME/hpcsera/config.toml` (or `~/.config/hpcsera/config.toml`):
//! one URL and token per profile, so one person can use several servers. The profile is
//! `--profile NAME` (every client command has it), else `HPCSERA_PROFILE`, else `default`.
//!
//! ```toml
//! [profiles."default"]
//! url = "https://hpc.example.org"
//! token = "hpcs_…"
//! ```
//!
//! The file holds tokens: it is written with mode 0600, atomically (a temporary file in the
//! same directory, synced, renamed over the old one), and a file others may read is warned
//! about. A file of earlier releases (`url` and `token` at the top) is read as the `default`
//! profile and written in the new form the next time a login changes it.

use super::{CliError, CliResult};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The profile used when none is chosen.
pub const DEFAULT_PROFILE: &str = "default";

/// The profile in use (`--profile`, a global flag, or `HPCSERA_PROFILE`), and whether it was
/// chosen (rather than the default).
pub fn active() -> (String, bool) {
    match super::global().profile.filter(|p| !p.trim().is_empty()) {
        Some(p) => (p, true),
        None => (DEFAULT_PROFILE.to_string(), false),
    }
}

/// One server: its URL and the token for it.
#[derive(serde::Deserialize, Default, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: Option<String>,
    pub token: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// The single-server form of earlier releases: the `default` profile.
    url: Option<String>,
    token: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
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

/// Checks a profile name: letters, digits, `_`, `-` and `.`, at most 64.
pub fn check_name(name: &str) -> CliResult<()> {
    if hpcsera_api_types::is_valid_name(name, true) {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{name:?} is not a profile name: letters, digits, '_', '-' and '.', starting with a letter"
        )))
    }
}

/// The profiles of the config file (none when it does not exist), the old single-server form
/// read as `default`.
pub fn load(path: &Path) -> CliResult<BTreeMap<String, Profile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
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
                "warning: {} holds tokens and others may read it: chmod 600 it",
                path.display()
            );
        }
    }
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        CliError::usage(format!(
            "{} is not a valid config file: {}",
            path.display(),
            e.message()
        ))
    })?;
    let mut profiles = file.profiles;
    if file.url.is_some() || file.token.is_some() {
        profiles
            .entry(DEFAULT_PROFILE.to_string())
            .or_insert(Profile {
                url: file.url,
                token: file.token,
            });
    }
    Ok(profiles)
}

pub fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The server URL and token to use: the environment overrides the active profile.
pub fn resolve() -> CliResult<(String, String)> {
    let (env_url, env_token) = (env("HPCSERA_URL"), env("HPCSERA_TOKEN"));
    if let (Some(url), Some(token)) = (&env_url, &env_token) {
        return Ok((url.clone(), token.clone()));
    }
    let profiles = load(&config_path()?)?;
    let (name, chosen) = active();
    let profile = match profiles.get(&name) {
        Some(p) => p.clone(),
        None if chosen => {
            let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
            return Err(CliError::usage(format!(
                "there is no profile {name:?} (profiles: {}); run `hpcsera login --profile {name} --url URL`",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            )));
        }
        None => Profile::default(),
    };
    let url = env_url.or(profile.url).ok_or_else(|| {
        CliError::usage("no server URL: run `hpcsera login --url URL`, or set HPCSERA_URL")
    })?;
    let token = env_token
        .or(profile.token)
        .ok_or_else(|| CliError::usage("no token: run `hpcsera login`, or set HPCSERA_TOKEN"))?;
    Ok((url, token))
}

/// A TOML basic string: JSON string escapes are valid TOML for everything a URL, a token or
/// a profile name holds (the SDK refuses tokens with other characters than printable ASCII).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The config file's text for `profiles`.
fn render(profiles: &BTreeMap<String, Profile>) -> String {
    let mut text = String::from(
        "# Written by `hpcsera login`: one server URL and token per profile.\n\
         # Keep it private (mode 0600).\n",
    );
    for (name, p) in profiles {
        text.push_str(&format!("\n[profiles.{}]\n", toml_string(name)));
        if let Some(u) = &p.url {
            text.push_str(&format!("url = {}\n", toml_string(u)));
        }
        if let Some(t) = &p.token {
            text.push_str(&format!("token = {}\n", toml_string(t)));
        }
    }
    text
}

/// Writes `profiles` to the config file atomically with mode 0600 (a temporary file in the
/// same directory, synced, then renamed over the old one); with no profiles left, removes it.
pub fn save(path: &Path, profiles: &BTreeMap<String, Profile>) -> CliResult<()> {
    if profiles.is_empty() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::other(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
        };
    }
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
    let text = render(profiles);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_and_the_old_form_is_the_default_profile() {
        let mut profiles = BTreeMap::new();
        for (name, url, token) in [
            ("default", "http://h:8080", "hpcs_abc-DEF_123"),
            ("gwdg.scc", "https://a\"b\\c", "hpcs_x"),
        ] {
            let p = Profile {
                url: Some(url.into()),
                token: Some(token.into()),
            };
            profiles.insert(name.to_string(), p);
        }
        let dir = std::env::temp_dir().join(format!("hpcsera-cfg-{}", std::process::id()));
        let path = dir.join("config.toml");
        save(&path, &profiles).unwrap();
        assert_eq!(load(&path).unwrap(), profiles);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(&path, "url = \"http://old:1\"\ntoken = \"hpcs_old\"\n").unwrap();
        let old = load(&path).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(old["default"].url.as_deref(), Some("http://old:1"));
        save(&path, &BTreeMap::new()).unwrap();
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
