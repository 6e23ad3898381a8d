//! `hpcsera login`, `logout` and `profiles`: storing a server's URL and a token in a profile
//! of the config file (`config.rs`), listing and removing them.
//!
//! A token comes from the terminal (without echo) or stdin, or — with `--device` — from the
//! OAuth device flow: the command asks the server for a code, shows it with the page where a
//! person approves it (and a QR code of the link when stderr is a terminal), waits with the
//! server's interval, and stores the token it gets. Everything for people goes to stderr; a
//! token is never printed.

use super::config::{self, Profile};
use super::{exit, output, CliError, CliResult, Format};
use clap::Args;
use hpcsera_client::{DeviceRequest, Lifetime, RoleSet};
use std::io::{IsTerminal, Read, Write};

#[derive(Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://hpc.example.org (default: HPCSERA_URL or the profile's).
    #[arg(long)]
    url: Option<String>,
    /// Read the token from stdin (else it is asked for on the terminal, without echo).
    #[arg(long, conflicts_with = "device")]
    token_stdin: bool,
    /// Get the token by approving this login in the web UI (OAuth device flow): prints a code
    /// and a page to open, then waits.
    #[arg(long, requires_all = ["project", "roles"])]
    device: bool,
    /// With --device: the project the token is for.
    #[arg(long, requires = "device")]
    project: Option<String>,
    /// With --device: the roles asked for, comma-separated (e.g. GET_JobStatus,POST_Job).
    #[arg(long, requires = "device", value_parser = RoleSet::parse_list)]
    roles: Option<RoleSet>,
    /// With --device: restrict the token to one site.
    #[arg(long, requires = "device")]
    site: Option<String>,
    /// With --device: how long the token should live (45m, 12h, 30d; default: the server's).
    #[arg(long, requires = "device", value_parser = Lifetime::parse)]
    lifetime: Option<Lifetime>,
    /// With --device: the name the approving person sees (default: "hpcsera CLI on HOST").
    #[arg(long, requires = "device")]
    client_name: Option<String>,
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

/// A token typed on the terminal or given on stdin.
fn typed_token(a: &LoginArgs, url: &str) -> CliResult<String> {
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
            "stdin is not a terminal: give the token on stdin with --token-stdin, or use --device",
        ));
    };
    if token.is_empty() {
        return Err(CliError::usage("the token is empty"));
    }
    Ok(token)
}

/// `hpcsera CLI on HOST`, cut to the longest client name.
fn default_client_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|c| !c.is_control())
            .collect()
    } else {
        String::from("this computer")
    };
    let name = format!("hpcsera CLI on {host}");
    name.chars()
        .take(hpcsera_api_types::oauth::MAX_CLIENT_NAME_CHARS)
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The QR code of `link` as text (two rows per line), light on dark as terminals show best.
fn qr_code(link: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(link.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build(),
    )
}

/// Gets a token through the device flow: shows the code, waits for the person's decision.
async fn device_token(a: &LoginArgs, url: &str) -> CliResult<String> {
    let (Some(project), Some(roles)) = (a.project.as_deref(), a.roles) else {
        return Err(CliError::usage("--device needs --project and --roles"));
    };
    let client_name = a.client_name.clone().unwrap_or_else(default_client_name);
    let request = DeviceRequest {
        client_name: &client_name,
        project,
        roles,
        site: a.site.as_deref(),
        lifetime: a.lifetime,
    };
    let options = super::http_options(std::time::Duration::from_secs(60));
    let flow = hpcsera_client::start_device_flow_with(url, &request, &options).await?;
    let clean = |s: &str| output::clean(s).into_owned();
    eprintln!(
        "To approve this login, open {}\nand enter the code {}\n(or open {})",
        clean(&flow.verification_uri),
        clean(&flow.user_code),
        clean(&flow.verification_uri_complete)
    );
    if std::io::stderr().is_terminal() {
        if let Some(qr) = qr_code(&flow.verification_uri_complete) {
            eprintln!("{qr}");
        }
    }
    eprintln!(
        "Waiting for the approval (the code expires in {} minutes)…",
        flow.expires_in.as_secs().div_ceil(60)
    );
    match flow.wait().await {
        Ok(t) => Ok(t.access_token),
        Err(e) => Err(match e.code() {
            Some("access_denied") => CliError::other("the login was denied in the web UI"),
            Some("expired_token") => CliError::other(
                "the code expired before anyone approved it: run `hpcsera login --device` again",
            ),
            _ => e.into(),
        }),
    }
}

pub async fn login(a: LoginArgs) -> CliResult {
    let (name, _) = config::active();
    config::check_name(&name)?;
    let path = config::config_path()?;
    let mut profiles = config::load(&path).unwrap_or_default();
    let url = a
        .url
        .clone()
        .or_else(|| config::env("HPCSERA_URL"))
        .or_else(|| profiles.get(&name).and_then(|p| p.url.clone()))
        .ok_or_else(|| CliError::usage("give the server's URL with --url"))?;
    let token = if a.device {
        device_token(&a, &url).await?
    } else {
        typed_token(&a, &url)?
    };
    let options = super::http_options(std::time::Duration::from_secs(90));
    let client = hpcsera_client::Client::with_options(&url, &token, &options)?;
    let me = client.whoami().await?;
    let profile = Profile {
        url: Some(url),
        token: Some(token),
    };
    profiles.insert(name.clone(), profile);
    config::save(&path, &profiles)?;
    eprintln!(
        "logged in to {} as {} (project {}); saved in {} as profile {name}",
        client.base_url().trim_end_matches('/'),
        output::clean(&me.user),
        output::clean(&me.project),
        path.display()
    );
    if config::env("HPCSERA_URL").is_some() || config::env("HPCSERA_TOKEN").is_some() {
        eprintln!("note: HPCSERA_URL/HPCSERA_TOKEN are set and take precedence over the file");
    }
    Ok(exit::OK)
}

/// `hpcsera logout`: removes the active profile from the config file.
pub fn logout() -> CliResult {
    let (name, _) = config::active();
    let path = config::config_path()?;
    let mut profiles = config::load(&path)?;
    if profiles.remove(&name).is_none() {
        eprintln!("not logged in: {} has no profile {name}", path.display());
    } else {
        config::save(&path, &profiles)?;
        eprintln!(
            "logged out: removed the profile {name} from {}",
            path.display()
        );
    }
    if config::env("HPCSERA_TOKEN").is_some() {
        eprintln!("note: HPCSERA_TOKEN is still set in this environment");
    }
    Ok(exit::OK)
}

/// `hpcsera profiles`: the profiles of the config file (never their tokens).
pub fn profiles(format: Format) -> CliResult {
    let path = config::config_path()?;
    let profiles = config::load(&path)?;
    let (active, _) = config::active();
    match format {
        Format::Json => {
            let list: Vec<serde_json::Value> = profiles
                .iter()
                .map(|(name, p)| {
                    serde_json::json!({
                        "name": name,
                        "url": p.url,
                        "hasToken": p.token.is_some(),
                        "active": *name == active,
                    })
                })
                .collect();
            output::json(&serde_json::json!({ "profiles": list, "active": active }))?;
        }
        Format::Table => {
            let rows = profiles
                .iter()
                .map(|(name, p)| {
                    vec![
                        if *name == active {
                            "*".into()
                        } else {
                            String::new()
                        },
                        name.clone(),
                        p.url.clone().unwrap_or_else(|| "-".into()),
                        if p.token.is_some() { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            output::table(&["", "PROFILE", "URL", "TOKEN"], rows)?;
        }
    }
    Ok(exit::OK)
}
