//! OpenSSH allowed-signers files (`ssh-keygen(1)`, ALLOWED SIGNERS): who may sign, with which
//! key, for which namespaces, and when.
//!
//! ```text
//! # principals [options] keytype base64-key [comment]
//! alice,bob@example.org ssh-ed25519 AAAAC3Nz… alice's laptop
//! carol namespaces="hpcsera-code",valid-before="20271231Z" ecdsa-sha2-nistp256 AAAAE2V…
//! ```
//!
//! Read as `ssh-keygen -Y verify -f FILE -I PRINCIPAL -n NAMESPACE` reads it: the principals
//! field is a pattern list (`*`, `?`, `!` negation, commas; it may be quoted), options are
//! comma-separated with quoted values and case-insensitive names (`namespaces`,
//! `valid-after`, `valid-before`; times `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`, local time
//! unless `Z`), and a key is acceptable when a line matches the principal, permits the
//! namespace, is valid now and holds exactly that key. Stricter than OpenSSH in one way: a
//! line that cannot be read makes the whole file unusable (OpenSSH skips it), and
//! `cert-authority` lines are refused with a message (approvals are signed with plain keys).
//!
//! This module reads text only; the caller reads the file.

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

/// The largest allowed-signers file accepted.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One usable line of the file.
#[derive(Debug, Clone)]
struct Entry {
    line: usize,
    principals: String,
    options: Options,
    key: KeyData,
}

/// The options of a line.
#[derive(Debug, Clone, Default)]
struct Options {
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// A parsed allowed-signers file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<Entry>,
}

/// A line of the file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

/// Why a key is not accepted for a principal and namespace now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("the signing key {fingerprint} is not in the allowed signers")]
    KeyNotListed { fingerprint: String },
    #[error("the signing key {fingerprint} is in the allowed signers, but not for principal {principal:?}")]
    NotForPrincipal {
        fingerprint: String,
        principal: String,
    },
    #[error("allowed signers line {line} does not permit the namespace {namespace:?}")]
    Namespace { line: usize, namespace: String },
    #[error("allowed signers line {line}: the key is valid only from {from} (valid-after)")]
    NotYetValid { line: usize, from: String },
    #[error("allowed signers line {line}: the key was valid only until {until} (valid-before)")]
    NoLongerValid { line: usize, until: String },
}

impl NotAllowed {
    /// How far a line got before it failed (the most telling failure is reported).
    fn depth(&self) -> u8 {
        match self {
            NotAllowed::KeyNotListed { .. } => 0,
            NotAllowed::NotForPrincipal { .. } => 1,
            NotAllowed::Namespace { .. } => 2,
            NotAllowed::NotYetValid { .. } | NotAllowed::NoLongerValid { .. } => 3,
        }
    }
}

impl AllowedSigners {
    /// Reads the text of a file; every line that cannot be used is an error.
    pub fn parse(text: &str) -> Result<AllowedSigners, Vec<LineError>> {
        if text.len() > MAX_FILE_BYTES {
            return Err(vec![LineError {
                line: 0,
                problem: format!("the file is larger than {MAX_FILE_BYTES} bytes"),
            }]);
        }
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            match parse_line(i + 1, raw) {
                Ok(Some(e)) => entries.push(e),
                Ok(None) => {}
                Err(problem) => errors.push(LineError {
                    line: i + 1,
                    problem,
                }),
            }
        }
        if errors.is_empty() {
            Ok(AllowedSigners { entries })
        } else {
            Err(errors)
        }
    }

    /// How many keys the file lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `key` may sign for `principal` in `namespace` at `now` (seconds since the
    /// epoch); the line that allows it.
    pub fn check(
        &self,
        principal: &str,
        key: &KeyData,
        namespace: &str,
        now: i64,
    ) -> Result<usize, NotAllowed> {
        let fingerprint = PublicKey::from(key.clone())
            .fingerprint(HashAlg::Sha256)
            .to_string();
        let mut worst = NotAllowed::KeyNotListed {
            fingerprint: fingerprint.clone(),
        };
        for e in self.entries.iter().filter(|e| &e.key == key) {
            match e.allows(principal, namespace, now, &fingerprint) {
                Ok(()) => return Ok(e.line),
                Err(why) if why.depth() > worst.depth() => worst = why,
                Err(_) => {}
            }
        }
        Err(worst)
    }
}

impl Entry {
    fn allows(
        &self,
        principal: &str,
        namespace: &str,
        now: i64,
        fingerprint: &str,
    ) -> Result<(), NotAllowed> {
        if !match_pattern_list(principal, &self.principals) {
            return Err(NotAllowed::NotForPrincipal {
                fingerprint: fingerprint.to_string(),
                principal: principal.to_string(),
            });
        }
        if let Some(ns) = &self.options.namespaces {
            if !match_pattern_list(namespace, ns) {
                return Err(NotAllowed::Namespace {
                    line: self.line,
                    namespace: namespace.to_string(),
                });
            }
        }
        let show = |t: i64| crate::message::format_time(t).unwrap_or_else(|| t.to_string());
        if let Some(after) = self.options.valid_after.filter(|a| now < *a) {
            return Err(NotAllowed::NotYetValid {
                line: self.line,
                from: show(after),
            });
        }
        if let Some(before) = self.options.valid_before.filter(|b| now > *b) {
            return Err(NotAllowed::NoLongerValid {
                line: self.line,
                until: show(before),
            });
        }
        Ok(())
    }
}

/// One line: `None` for a blank line or a comment.
fn parse_line(n: usize, raw: &str) -> Result<Option<Entry>, String> {
    let line = raw.trim_matches([' ', '\t', '\r']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (principals, rest) = take_field(line)?;
    if principals.is_empty() {
        return Err("no principals".into());
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    // The key starts with its type; anything else before it is the options field.
    let is_key = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|t| rest.starts_with(t));
    let (options, key_text) = if is_key {
        ("", rest)
    } else {
        let (opts, after) = take_field(rest)?;
        (opts, after.trim_start_matches([' ', '\t']))
    };
    // Options first: a refused option (cert-authority) says more than the key after it.
    let options = parse_options(options)?;
    let key = PublicKey::from_openssh(key_text).map_err(|e| {
        if key_text.is_empty() {
            "no key".to_string()
        } else {
            format!("cannot read the key: {e}")
        }
    })?;
    Ok(Some(Entry {
        line: n,
        principals: principals.to_string(),
        options,
        key: key.key_data().clone(),
    }))
}

/// The first whitespace-separated field (double quotes keep spaces in it) and the rest.
fn take_field(s: &str) -> Result<(&str, &str), String> {
    if let Some(inner) = s.strip_prefix('"') {
        let end = inner
            .find('"')
            .ok_or("a quoted principals field has no closing quote")?;
        let after = &inner[end + 1..];
        if !after.is_empty() && !after.starts_with([' ', '\t']) {
            return Err("text right after a closing quote".into());
        }
        return Ok((&inner[..end], after));
    }
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    Ok((s, ""))
}

/// Reads `namespaces="…",valid-after="…",valid-before="…"` (and refuses `cert-authority`).
fn parse_options(mut s: &str) -> Result<Options, String> {
    let mut e = Options::default();
    while !s.is_empty() {
        let name_end = s.find(['=', ',']).unwrap_or(s.len());
        let name = s[..name_end].to_ascii_lowercase();
        s = &s[name_end..];
        if name == "cert-authority" {
            return Err(
                "cert-authority is not supported for approvals: list each signer's own key".into(),
            );
        }
        let Some(value_text) = s.strip_prefix('=') else {
            return Err(format!("unknown option {name:?}"));
        };
        let (value, after) = dequote(value_text)
            .ok_or_else(|| format!("the value of {name} must be in double quotes"))?;
        s = after;
        let seen = match name.as_str() {
            "namespaces" => e.namespaces.replace(value).is_some(),
            "valid-after" => e.valid_after.replace(parse_timestamp(&value)?).is_some(),
            "valid-before" => e.valid_before.replace(parse_timestamp(&value)?).is_some(),
            other => return Err(format!("unknown option {other:?}")),
        };
        if seen {
            return Err(format!("the option {name} is given twice"));
        }
        if let Some(more) = s.strip_prefix(',') {
            if more.is_empty() {
                return Err("the options end with a comma".into());
            }
            s = more;
        } else if !s.is_empty() {
            return Err("options are separated by commas".into());
        }
    }
    Ok(e)
}

/// A double-quoted value (`\"` stands for a quote) and the text after it.
fn dequote(s: &str) -> Option<(String, &str)> {
    let inner = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if inner[i + 1..].starts_with('"') => {
                chars.next();
                out.push('"');
            }
            '"' => return Some((out, &inner[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// `YYYYMMDD[Z]` or `YYYYMMDDHHMM[SS][Z]`: UTC with `Z`, else the local time zone.
fn parse_timestamp(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a time YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]");
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| digits.get(r).and_then(|d| d.parse::<i32>().ok());
    let part = |r: std::ops::Range<usize>| num(r).unwrap_or(0);
    let (year, month, day) = (part(0..4), part(4..6), part(6..8));
    let (hour, minute, second) = (part(8..10), part(10..12), part(12..14));
    let month =
        time::Month::try_from(u8::try_from(month).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let t = time::Time::from_hms(
        u8::try_from(hour).map_err(|_| bad())?,
        u8::try_from(minute).map_err(|_| bad())?,
        u8::try_from(second).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let at = time::PrimitiveDateTime::new(date, t);
    if utc {
        Ok(at.assume_utc().unix_timestamp())
    } else {
        local_to_epoch(at).ok_or_else(bad)
    }
}

/// A local wall-clock time as seconds since the epoch (the C library's `mktime`, which knows
/// the system's zone and daylight saving time).
fn local_to_epoch(at: time::PrimitiveDateTime) -> Option<i64> {
    // SAFETY: `tm` is plain data, zeroed and then filled; mktime only reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = at.year() - 1900;
    tm.tm_mon = i32::from(u8::from(at.month())) - 1;
    tm.tm_mday = i32::from(at.day());
    tm.tm_hour = i32::from(at.hour());
    tm.tm_min = i32::from(at.minute());
    tm.tm_sec = i32::from(at.second());
    tm.tm_isdst = -1;
    // SAFETY: a valid, initialised `tm`.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}

/// OpenSSH's pattern lists: comma-separated patterns with `*` and `?`; a match of a pattern
/// starting with `!` refuses at once; otherwise some pattern must match. Case matters.
pub fn match_pattern_list(s: &str, list: &str) -> bool {
    let mut positive = false;
    for p in list.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if match_pattern(s.as_bytes(), p.as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of bytes, `?` one byte, anything else itself.
fn match_pattern(s: &[u8], p: &[u8]) -> bool {
    // Iterative with one back-tracking point (linear in practice, no recursion).
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == s[si] => {
                si += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGiiU+7mt0JEah+a64cXOydxf9KO2J9RV4O8xQdxHURi";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIYgCnqoSZxOY2edvJeZY0kYLHwX9r9ikRBr4Bgiw4Og";

    fn key(k: &str) -> KeyData {
        PublicKey::from_openssh(k).unwrap().key_data().clone()
    }

    fn ns() -> &'static str {
        crate::NAMESPACE
    }

    #[test]
    fn patterns_match_like_openssh() {
        assert!(match_pattern_list("alice", "alice"));
        assert!(match_pattern_list("alice", "bob,alice"));
        assert!(!match_pattern_list("alice", "Alice"));
        assert!(match_pattern_list("alice@example.org", "*@example.org"));
        assert!(!match_pattern_list(
            "alice@example.org",
            "*@example.org,!alice@*"
        ));
        assert!(!match_pattern_list("alice", "!alice"));
        assert!(match_pattern_list("ab", "a?"));
        assert!(!match_pattern_list("abc", "a?"));
        assert!(match_pattern_list("abc", "a*c"));
        assert!(match_pattern_list("a", "a***"));
        assert!(!match_pattern_list("x", ""));
        assert!(!match_pattern_list(
            &"a".repeat(10_000),
            &format!("{}b", "*a".repeat(50))
        ));
    }

    #[test]
    fn reads_principals_options_keys_and_comments() {
        let text = format!(
            "# a comment\n\n  alice,bob {ED} alice's laptop\n\
             \"carol dave\" NameSpaces=\"hpcsera-code,git\",valid-after=\"20200101Z\",valid-before=\"209901011200Z\" {ED2}\n"
        );
        let a = AllowedSigners::parse(&text).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.check("bob", &key(ED), ns(), 0), Ok(3));
        assert_eq!(a.check("carol dave", &key(ED2), ns(), 1_700_000_000), Ok(4));
        assert!(matches!(
            a.check("mallory", &key(ED), ns(), 0),
            Err(NotAllowed::NotForPrincipal { .. })
        ));
        assert!(matches!(
            a.check("bob", &key(ED2), ns(), 0),
            Err(NotAllowed::NotForPrincipal { .. })
        ));
        assert!(matches!(
            a.check("carol dave", &key(ED2), "file", 1_700_000_000),
            Err(NotAllowed::Namespace { line: 4, .. })
        ));
        assert!(matches!(
            a.check("carol dave", &key(ED2), ns(), 1_000_000_000),
            Err(NotAllowed::NotYetValid { line: 4, .. })
        ));
        assert!(matches!(
            a.check("carol dave", &key(ED2), ns(), 4_200_000_000),
            Err(NotAllowed::NoLongerValid { line: 4, .. })
        ));
        let empty = AllowedSigners::parse("# nobody\n").unwrap();
        assert!(matches!(
            empty.check("bob", &key(ED), ns(), 0),
            Err(NotAllowed::KeyNotListed { .. })
        ));
    }

    #[test]
    fn a_bad_line_makes_the_file_unusable_with_its_line_number() {
        for (text, want) in [
            (format!("alice cert-authority {ED}"), "cert-authority"),
            (
                format!("alice namespaces=hpcsera-code {ED}"),
                "double quotes",
            ),
            (
                format!("alice namespaces=\"a\",namespaces=\"b\" {ED}"),
                "twice",
            ),
            (format!("alice frobnicate=\"x\" {ED}"), "unknown option"),
            (format!("alice valid-after=\"2020\" {ED}"), "not a time"),
            (
                format!("alice valid-after=\"20201301Z\" {ED}"),
                "not a time",
            ),
            ("alice".to_string(), "no key"),
            (
                "alice ssh-ed25519 AAAAnotbase64".to_string(),
                "cannot read the key",
            ),
            (format!("\"alice {ED}"), "closing quote"),
            (format!("alice namespaces=\"x\", {ED}"), "comma"),
        ] {
            let text = format!("# first\n{text}\n");
            let errs = AllowedSigners::parse(&text).unwrap_err();
            assert_eq!(errs[0].line, 2, "{text}");
            assert!(errs[0].problem.contains(want), "{text}: {}", errs[0]);
        }
    }

    #[test]
    fn local_times_use_the_system_zone() {
        // Whatever the zone, a local midnight is within a day of UTC midnight.
        let local = parse_timestamp("20240301").unwrap();
        let utc = parse_timestamp("20240301Z").unwrap();
        assert!((local - utc).abs() <= 86_400);
        assert_eq!(
            parse_timestamp("20240301123456Z").unwrap(),
            utc + 12 * 3600 + 34 * 60 + 56
        );
    }
}
