//! The canonical approval message: the exact bytes a person signs to approve a code bundle.
//!
//! ```text
//! hpcsera-code-approval v1
//! digest sha256:<64 lower-case hex digits>
//! project <name>
//! site <name>
//! site <name>
//! expires <YYYY-MM-DDTHH:MM:SSZ>
//! ```
//!
//! One field per line, every line (the last too) ended by one LF; the key and the value are
//! separated by one space. The lines come in exactly this order: the version line, one
//! `digest`, one `project`, one or more `site` lines (sorted by byte value, no repeats, at
//! most [`MAX_SITES`]) and at most one `expires` (UTC, whole seconds). Names follow the
//! server's rule for names (a letter or `_`, then letters, digits, `_`, `-`, `.`; at most 64),
//! so no value can hold a space, a line break or anything that could be read as another
//! field. [`ApprovalMessage::parse`] accepts only text that [`ApprovalMessage::render`] would
//! write for the same values, byte for byte: there is one message per approval, and a
//! message means one thing.
//!
//! This module only reads and writes text; it never looks at signatures or keys.

use hpcsera_api_types::{is_code_id, is_valid_name};
use std::fmt;

/// The first line: the format and its version.
pub const VERSION_LINE: &str = "hpcsera-code-approval v1";
/// The most sites one approval may name.
pub const MAX_SITES: usize = 64;
/// The longest message accepted (far above the longest valid one).
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// What a person approves: these bytes (the digest), in this project, on these sites, until
/// this time (seconds since the Unix epoch, UTC), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalMessage {
    /// SHA-256 of the bundle, 64 lower-case hex digits (the bundle id).
    pub digest: String,
    pub project: String,
    /// Sorted, without repeats, at least one.
    pub sites: Vec<String>,
    pub expires: Option<i64>,
}

/// Why a text is not a canonical approval message (or values cannot make one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message is longer than {MAX_MESSAGE_BYTES} bytes")]
    TooLong,
    #[error("the message must end with a line break (LF)")]
    NoFinalNewline,
    #[error("line {line}: expected {expected:?}")]
    Expected { line: usize, expected: String },
    #[error("line {line}: {problem}")]
    Value { line: usize, problem: String },
    #[error("the message ends before {0:?}")]
    Missing(String),
    #[error("line {line}: unexpected text after the last field")]
    Trailing { line: usize },
    #[error("{0}")]
    Invalid(String),
}

impl ApprovalMessage {
    /// A message for these values, with the sites sorted and repeats removed; refused when a
    /// value could not appear in a canonical message.
    pub fn new(
        digest: &str,
        project: &str,
        sites: &[String],
        expires: Option<i64>,
    ) -> Result<ApprovalMessage, MessageError> {
        let mut sites = sites.to_vec();
        sites.sort();
        sites.dedup();
        let m = ApprovalMessage {
            digest: digest.to_string(),
            project: project.to_string(),
            sites,
            expires,
        };
        m.check_values(0)?;
        Ok(m)
    }

    /// Checks every value (line 0: not from a text).
    fn check_values(&self, line: usize) -> Result<(), MessageError> {
        let bad = |problem: String| MessageError::Value { line, problem };
        if !is_code_id(&self.digest) {
            return Err(bad(
                "the digest must be 64 lower-case hex digits (a SHA-256)".into(),
            ));
        }
        check_name("project", &self.project).map_err(bad)?;
        if self.sites.is_empty() {
            return Err(MessageError::Invalid(
                "an approval names at least one site".into(),
            ));
        }
        if self.sites.len() > MAX_SITES {
            return Err(MessageError::Invalid(format!(
                "an approval names at most {MAX_SITES} sites"
            )));
        }
        for s in &self.sites {
            check_name("site", s).map_err(bad)?;
        }
        if self.sites.windows(2).any(|w| w[0] >= w[1]) {
            return Err(MessageError::Invalid(
                "the sites must be sorted and each named once".into(),
            ));
        }
        if let Some(e) = self.expires {
            format_time(e).ok_or_else(|| bad("the expiry is out of range".into()))?;
        }
        Ok(())
    }

    /// The canonical text (what is signed).
    pub fn render(&self) -> String {
        let mut s = format!(
            "{VERSION_LINE}\ndigest sha256:{}\nproject {}\n",
            self.digest, self.project
        );
        for site in &self.sites {
            s.push_str("site ");
            s.push_str(site);
            s.push('\n');
        }
        if let Some(t) = self.expires.and_then(format_time) {
            s.push_str("expires ");
            s.push_str(&t);
            s.push('\n');
        }
        s
    }

    /// Reads a canonical message; anything else is refused with the line and the problem.
    pub fn parse(text: &str) -> Result<ApprovalMessage, MessageError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLong);
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err(MessageError::NoFinalNewline);
        };
        let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let mut next = |expected: &str| {
            lines
                .next()
                .ok_or_else(|| MessageError::Missing(expected.to_string()))
                .map(|(n, l)| (n, l.to_string()))
        };
        let (n, first) = next(VERSION_LINE)?;
        if first != VERSION_LINE {
            return Err(MessageError::Expected {
                line: n,
                expected: VERSION_LINE.into(),
            });
        }
        let (n, l) = next("digest sha256:…")?;
        let digest = field(n, &l, "digest sha256:")?;
        let (n, l) = next("project …")?;
        let project = field(n, &l, "project ")?;
        let rest: Vec<(usize, String)> = std::iter::from_fn(|| next("").ok()).collect();
        let (sites, expires) = sites_and_expiry(&rest)?;
        let m = ApprovalMessage {
            digest,
            project,
            sites,
            expires,
        };
        m.check_values(n)?;
        // Canonical form: the same values must render to the same bytes (this rejects, e.g.,
        // a time written another way).
        if m.render() != text {
            return Err(MessageError::Invalid(
                "the message is not in canonical form".into(),
            ));
        }
        Ok(m)
    }
}

impl fmt::Display for ApprovalMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The value of line `n` after `prefix`, which must be there exactly.
fn field(n: usize, line: &str, prefix: &str) -> Result<String, MessageError> {
    line.strip_prefix(prefix)
        .map(str::to_string)
        .ok_or_else(|| MessageError::Expected {
            line: n,
            expected: format!("{}…", prefix),
        })
}

/// The `site` lines (at least one) and the optional `expires` line after them.
fn sites_and_expiry(rest: &[(usize, String)]) -> Result<(Vec<String>, Option<i64>), MessageError> {
    let mut sites = Vec::new();
    let mut expires = None;
    for (n, l) in rest {
        if expires.is_some() {
            return Err(MessageError::Trailing { line: *n });
        }
        if let Some(s) = l.strip_prefix("site ") {
            sites.push(s.to_string());
        } else if let Some(t) = l.strip_prefix("expires ") {
            if sites.is_empty() {
                return Err(MessageError::Expected {
                    line: *n,
                    expected: "site …".into(),
                });
            }
            expires = Some(parse_time(t).ok_or_else(|| MessageError::Value {
                line: *n,
                problem: "the expiry must be a UTC time written YYYY-MM-DDTHH:MM:SSZ".into(),
            })?);
        } else {
            return Err(MessageError::Expected {
                line: *n,
                expected: if sites.is_empty() {
                    "site …".into()
                } else {
                    "site … or expires …".into()
                },
            });
        }
    }
    Ok((sites, expires))
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if is_valid_name(name, true) {
        Ok(())
    } else {
        Err(format!(
            "the {what} name {name:?} must start with a letter or '_' and contain only letters, digits, '_', '-', '.' (at most 64)"
        ))
    }
}

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// `2026-05-01T12:00:00Z` for seconds since the epoch (years 0 to 9999 only).
pub fn format_time(secs: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    t.format(TIME_FORMAT).ok()
}

/// The inverse of [`format_time`].
pub fn parse_time(s: &str) -> Option<i64> {
    if s.len() != 20 {
        return None;
    }
    let t = time::PrimitiveDateTime::parse(s, TIME_FORMAT).ok()?;
    Some(t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn msg(sites: &[&str], expires: Option<i64>) -> ApprovalMessage {
        let sites: Vec<String> = sites.iter().map(|s| s.to_string()).collect();
        ApprovalMessage::new(D, "proj", &sites, expires).unwrap()
    }

    #[test]
    fn renders_and_parses_back() {
        let m = msg(&["b-site", "a.site", "b-site"], Some(1_800_000_000));
        let text = m.render();
        assert_eq!(
            text,
            format!(
                "hpcsera-code-approval v1\ndigest sha256:{D}\nproject proj\nsite a.site\nsite b-site\nexpires 2027-01-15T08:00:00Z\n"
            )
        );
        assert_eq!(ApprovalMessage::parse(&text).unwrap(), m);
        let m = msg(&["s"], None);
        assert_eq!(ApprovalMessage::parse(&m.render()).unwrap(), m);
    }

    #[test]
    fn values_that_could_be_read_as_other_fields_are_refused() {
        for (project, site) in [
            ("proj\nsite evil", "s"),
            ("proj site evil", "s"),
            ("proj", "s\nexpires 2099-01-01T00:00:00Z"),
            ("proj", "s\r"),
            ("", "s"),
            ("proj", ""),
            ("proj", "site"),
        ] {
            let sites = vec![site.to_string()];
            let made = ApprovalMessage::new(D, project, &sites, None);
            if project == "proj" && site == "site" {
                // "site" is a valid site name: as a value it is only ever a value.
                let m = made.unwrap();
                assert_eq!(ApprovalMessage::parse(&m.render()).unwrap().sites, ["site"]);
                continue;
            }
            assert!(made.is_err(), "{project:?} {site:?}");
        }
        assert!(ApprovalMessage::new("ABC", "p", &["s".into()], None).is_err());
        assert!(ApprovalMessage::new(&D.to_uppercase(), "p", &["s".into()], None).is_err());
        assert!(ApprovalMessage::new(D, "p", &[], None).is_err());
    }

    #[test]
    fn a_project_named_like_a_site_stays_the_project() {
        // Project "gwdg-scc" with site "proj": each value stays in its own field.
        let sites = vec!["proj".to_string()];
        let m = ApprovalMessage::new(D, "gwdg-scc", &sites, None).unwrap();
        let back = ApprovalMessage::parse(&m.render()).unwrap();
        assert_eq!(back.project, "gwdg-scc");
        assert_eq!(back.sites, ["proj"]);
        // Moving a line does not move a value to another field: the order is fixed.
        let swapped = format!("{VERSION_LINE}\ndigest sha256:{D}\nsite proj\nproject gwdg-scc\n");
        assert!(ApprovalMessage::parse(&swapped).is_err());
    }

    #[test]
    fn every_variation_of_a_canonical_text_is_refused() {
        let good = msg(&["a", "b"], Some(1_800_000_000)).render();
        assert!(ApprovalMessage::parse(&good).is_ok());
        let variations = [
            good.trim_end().to_string(),                      // no final newline
            good.replace('\n', "\r\n"),                       // CRLF
            format!("{good}\n"),                              // an empty line at the end
            format!("\u{feff}{good}"),                        // a BOM
            good.replace("project proj", "project  proj"),    // two spaces
            good.replace("project proj", "project proj "),    // trailing space
            good.replace("project proj", "Project proj"),     // case
            good.replace("project proj", "project\tproj"),    // tab
            good.replace("site a\nsite b", "site b\nsite a"), // unsorted
            good.replace("site b", "site a"),                 // repeated
            good.replace("v1", "v2"),                         // another version
            good.replace("sha256:", "sha512:"),
            good.replace("sha256:", ""),
            good.replace(D, &D.to_uppercase()),
            good.replace("\nsite a\nsite b", ""), // no site
            good.replace("2027-01-15T08:00:00Z", "2027-01-15T08:00:00+00:00"),
            good.replace("2027-01-15T08:00:00Z", "2027-01-15 08:00:00Z"),
            good.replace("2027-01-15T08:00:00Z", "2027-1-15T08:00:00Z"),
            format!("{good}expires 2028-01-01T00:00:00Z\n"), // two expiries
            format!("{good}site c\n"),                       // a site after the expiry
            format!("{good}project other\n"),                // a second project
            good.replace("project proj\n", "project proj\nproject other\n"),
            good.replace("project proj\n", "project proj\nnote hi\n"), // unknown field
            format!("{VERSION_LINE}\n{good}"),                         // version twice
        ];
        for v in variations {
            assert!(ApprovalMessage::parse(&v).is_err(), "accepted {v:?}");
        }
        assert_eq!(
            ApprovalMessage::parse(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(MessageError::TooLong)
        );
    }

    #[test]
    fn times_round_trip_and_out_of_range_is_refused() {
        assert_eq!(format_time(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-02-30T00:00:00Z"), None);
        assert_eq!(format_time(i64::MAX), None);
        assert!(ApprovalMessage::new(D, "p", &["s".into()], Some(i64::MAX)).is_err());
    }
}
