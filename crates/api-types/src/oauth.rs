//! The OAuth 2.0 Device Authorization Grant (RFC 8628) on the wire, and what a client asks for
//! in it: the endpoints' paths, their form bodies and JSON answers (snake_case, as OAuth
//! writes them, not the API's camelCase), the `scope` syntax, client names and user codes.
//!
//! The scope names one project, the roles, and optionally a site and a lifetime:
//! `project:demo site:gwdg-scc lifetime:7d GET_JobStatus POST_Job`. The same parser is used
//! by the server (to refuse a bad scope with `invalid_scope`) and by the clients (to build
//! one), so the syntax cannot drift. No I/O here.

use crate::{is_valid_name, Role, RoleSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// The grant type of a device code redemption at the token endpoint.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Where a client asks for a device code (RFC 8628 §3.1).
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorization";
/// Where a client redeems it (RFC 8628 §3.4).
pub const TOKEN_PATH: &str = "/oauth/token";
/// The authorization server's metadata (RFC 8414).
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
/// The web page where a person enters the user code and decides.
pub const VERIFICATION_PATH: &str = "/ui/device";

/// Longest client name (`client_id`), in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 64;
/// Longest `scope`, in bytes.
pub const MAX_SCOPE_BYTES: usize = 1024;
/// The letters of user codes: consonants without vowels (no words) and without look-alikes
/// of digits, as RFC 8628 §6.1 suggests. Upper case; input is compared case-insensitively.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code (20^8 ≈ 2.6·10^10 codes), shown as two groups of four.
pub const USER_CODE_LEN: usize = 8;

/// The form body of `POST /oauth/device_authorization`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceAuthorizationRequest {
    /// The client's display name, shown to the person who approves (public clients have no
    /// secret): 1 to 64 characters, no control characters.
    pub client_id: String,
    /// What is asked for, e.g. `project:demo site:gwdg-scc lifetime:7d GET_JobStatus POST_Job`.
    pub scope: String,
}

/// The answer to a device authorization request (RFC 8628 §3.2).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceAuthorizationResponse {
    /// The client's secret for the token endpoint (256 bits; only its hash is kept).
    pub device_code: String,
    /// The short code the person types, e.g. `WDJB-MJHT`.
    pub user_code: String,
    /// The page where the person enters the code.
    pub verification_uri: String,
    /// The same page with the code filled in (for a QR code or a link).
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds the client must wait between token requests.
    pub interval: u64,
}

impl fmt::Debug for DeviceAuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorizationResponse")
            .field("device_code", &"<redacted>")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

/// The form body of `POST /oauth/token` for a device code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceTokenRequest {
    /// `urn:ietf:params:oauth:grant-type:device_code`.
    pub grant_type: String,
    /// The `device_code` of the device authorization response.
    pub device_code: String,
    /// The same `client_id` as in the device authorization request (public clients send it in
    /// the form; there is no client authentication).
    pub client_id: String,
}

/// A token issued by the token endpoint (RFC 6749 §5.1).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// An ordinary hpcsera token: send it as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// What was granted, in the scope syntax (possibly less than asked).
    pub scope: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// An OAuth error answer (RFC 6749 §5.2; RFC 8628 §3.5 adds `authorization_pending`,
/// `slow_down`, `access_denied` and `expired_token`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuthError {
    /// The error code, e.g. `authorization_pending`.
    pub error: String,
    /// What went wrong, for the developer of the client.
    pub error_description: Option<String>,
}

/// The authorization server's metadata (RFC 8414 §2), as far as this server has it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    pub issuer: String,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    pub grant_types_supported: Vec<String>,
    /// Empty: there is no authorization endpoint (only the device flow).
    pub response_types_supported: Vec<String>,
    /// `none`: clients are public and name themselves.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// The eight roles; a scope also names `project:…` and may name `site:…`, `lifetime:…`.
    pub scopes_supported: Vec<String>,
    pub service_documentation: String,
}

/// How long a token lives, in whole minutes, hours or days: `45m`, `12h`, `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lifetime(u64);

impl Lifetime {
    const UNITS: [(char, u64); 3] = [('d', 86_400), ('h', 3_600), ('m', 60)];

    pub fn from_secs(secs: u64) -> Lifetime {
        Lifetime(secs)
    }

    pub fn secs(self) -> u64 {
        self.0
    }

    /// `30d`, `12h` or `45m` (at least one minute, at most 100 years).
    pub fn parse(s: &str) -> Result<Lifetime, String> {
        let bad =
            || format!("lifetime {s:?} is not a number of minutes, hours or days (45m, 12h, 30d)");
        let unit = s.chars().last().ok_or_else(bad)?;
        let (_, per) = Self::UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let secs = n.checked_mul(*per).ok_or_else(bad)?;
        if secs == 0 || secs > 100 * 365 * 86_400 {
            return Err(bad());
        }
        Ok(Lifetime(secs))
    }
}

impl fmt::Display for Lifetime {
    /// In the largest unit that divides it: `7d`, `36h`, `90m` (a lifetime of seconds is shown
    /// in whole minutes, rounded down, but at least `1m`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, per) = Self::UNITS
            .iter()
            .find(|(_, per)| self.0.is_multiple_of(*per))
            .copied()
            .unwrap_or(('m', 60));
        write!(f, "{}{unit}", (self.0 / per).max(1))
    }
}

/// What a device login asks for: parsed from, and written as, the `scope`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceScope {
    pub project: String,
    pub site: Option<String>,
    /// None: the server's default token lifetime.
    pub lifetime: Option<Lifetime>,
    pub roles: RoleSet,
}

impl DeviceScope {
    /// Parses a scope: space-separated items, each `project:NAME` (exactly once),
    /// `site:NAME` (at most once), `lifetime:45m|12h|30d` (at most once) or a role name (at
    /// least one). Anything else is an error naming the item.
    pub fn parse(scope: &str) -> Result<DeviceScope, String> {
        if scope.len() > MAX_SCOPE_BYTES {
            return Err(format!("the scope is longer than {MAX_SCOPE_BYTES} bytes"));
        }
        let (mut project, mut site, mut lifetime) = (None, None, None);
        let mut roles = RoleSet::EMPTY;
        for item in scope.split(' ').filter(|i| !i.is_empty()) {
            if let Some(name) = item.strip_prefix("project:") {
                set_once(&mut project, "project", name_item("project", name)?)?;
            } else if let Some(name) = item.strip_prefix("site:") {
                set_once(&mut site, "site", name_item("site", name)?)?;
            } else if let Some(l) = item.strip_prefix("lifetime:") {
                set_once(&mut lifetime, "lifetime", Lifetime::parse(l)?)?;
            } else if let Ok(role) = item.parse::<Role>() {
                roles.insert(role);
            } else {
                let shown: String = item.chars().take(64).collect();
                return Err(format!(
                    "{shown:?} is not a scope item: use project:NAME, site:NAME, lifetime:30d or a role ({})",
                    Role::ALL.map(Role::as_str).join(", ")
                ));
            }
        }
        let project = project.ok_or("the scope names no project (project:NAME)")?;
        if roles.is_empty() {
            return Err("the scope names no role (e.g. GET_JobStatus POST_Job)".into());
        }
        Ok(DeviceScope {
            project,
            site,
            lifetime,
            roles,
        })
    }
}

impl fmt::Display for DeviceScope {
    /// The canonical scope: project, site, lifetime, then the roles in the design's order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "project:{}", self.project)?;
        if let Some(s) = &self.site {
            write!(f, " site:{s}")?;
        }
        if let Some(l) = self.lifetime {
            write!(f, " lifetime:{l}")?;
        }
        for r in self.roles.iter() {
            write!(f, " {r}")?;
        }
        Ok(())
    }
}

fn name_item(what: &str, name: &str) -> Result<String, String> {
    if is_valid_name(name, true) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{what}:{:?} is not a {what} name (letters, digits, '_', '-', '.'; at most 64)",
            name.chars().take(64).collect::<String>()
        ))
    }
}

fn set_once<T>(slot: &mut Option<T>, what: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("the scope names {what} more than once"));
    }
    *slot = Some(value);
    Ok(())
}

/// Checks a client's display name (its `client_id`): 1 to 64 characters, no control or
/// bidirectional-override characters (it is shown to a person who decides on it).
pub fn check_client_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_CLIENT_NAME_CHARS {
        return Err(format!(
            "client_id must have 1 to {MAX_CLIENT_NAME_CHARS} characters"
        ));
    }
    if name.trim() != name {
        return Err("client_id must not start or end with a space".into());
    }
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err("client_id contains a control or direction-changing character".into());
    }
    Ok(())
}

/// A user code as typed, reduced to its letters: upper-cased, with dashes and spaces dropped.
/// `None` unless exactly [`USER_CODE_LEN`] letters of [`USER_CODE_ALPHABET`] remain.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok = code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    ok.then_some(code)
}

/// A normalised user code as people see it: `WDJB-MJHT`.
pub fn format_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_canonically() {
        let s =
            DeviceScope::parse("POST_Job  project:demo lifetime:7d site:gwdg-scc GET_JobStatus")
                .unwrap();
        assert_eq!(s.project, "demo");
        assert_eq!(s.site.as_deref(), Some("gwdg-scc"));
        assert_eq!(s.lifetime, Some(Lifetime::from_secs(7 * 86_400)));
        assert_eq!(s.roles.to_vec(), vec![Role::GetJobStatus, Role::PostJob]);
        assert_eq!(
            s.to_string(),
            "project:demo site:gwdg-scc lifetime:7d GET_JobStatus POST_Job"
        );
        assert_eq!(DeviceScope::parse(&s.to_string()).unwrap(), s);
        let plain = DeviceScope::parse("project:p GET_Job").unwrap();
        assert_eq!((plain.site, plain.lifetime), (None, None));
    }

    #[test]
    fn bad_scopes_say_what_is_wrong() {
        for (scope, says) in [
            ("GET_Job", "no project"),
            ("project:p", "no role"),
            ("project:p project:q GET_Job", "more than once"),
            ("project:p site:a site:b GET_Job", "more than once"),
            ("project:p get_job", "not a scope item"),
            ("project:p ADMIN", "not a scope item"),
            ("project:a/b GET_Job", "not a project name"),
            ("project:p site: GET_Job", "not a site name"),
            ("project:p lifetime:0d GET_Job", "lifetime"),
            ("project:p lifetime:7y GET_Job", "lifetime"),
            ("project:p lifetime:d GET_Job", "lifetime"),
            ("project:p lifetime:-1h GET_Job", "lifetime"),
            ("", "no project"),
        ] {
            let e = DeviceScope::parse(scope).unwrap_err();
            assert!(e.contains(says), "{scope:?}: {e}");
        }
        let long = format!("project:p {}", "GET_Job ".repeat(200));
        assert!(DeviceScope::parse(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn lifetimes_print_in_the_largest_unit() {
        for (text, secs) in [("45m", 2_700), ("36h", 129_600), ("30d", 2_592_000)] {
            let l = Lifetime::parse(text).unwrap();
            assert_eq!(l.secs(), secs);
            assert_eq!(l.to_string(), text);
        }
        assert_eq!(Lifetime::parse("48h").unwrap().to_string(), "2d");
        assert_eq!(Lifetime::parse("120m").unwrap().to_string(), "2h");
    }

    #[test]
    fn client_names_are_short_and_printable() {
        assert!(check_client_name("hpcsera CLI on laptop").is_ok());
        assert!(check_client_name("Jupyter – ÿ").is_ok());
        for bad in ["", " x", "x\n", "a\u{1b}[2Jb", "a\u{202e}b", "a\u{9b}b"] {
            assert!(check_client_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_client_name(&"x".repeat(64)).is_ok());
        assert!(check_client_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn user_codes_are_read_as_people_type_them() {
        assert_eq!(
            normalize_user_code("WDJB-MJHT").as_deref(),
            Some("WDJBMJHT")
        );
        assert_eq!(
            normalize_user_code(" wdjb mjht").as_deref(),
            Some("WDJBMJHT")
        );
        assert_eq!(format_user_code("WDJBMJHT"), "WDJB-MJHT");
        for bad in ["WDJB-MJH", "WDJB-MJHTX", "AEIO-UWDJ", "WDJB-MJH1", ""] {
            assert_eq!(normalize_user_code(bad), None, "{bad:?}");
        }
    }
}
