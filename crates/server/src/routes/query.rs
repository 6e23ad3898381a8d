//! Query strings: the pairs of a raw query and the few value shapes several routes share
//! (a page size, a whole number). Errors name the parameter (400).
//!
//! Owns parsing only; it must never decide defaults that belong to one route.

use crate::error::{ApiError, ApiResult};
use base64::Engine;

use crate::api_bounds::MAX_PAGE;

/// The `key=value` pairs of a raw query, in order, percent-decoded.
pub(crate) fn pairs(q: &Option<String>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_field("query", e.to_string()))
}

/// A page size: 1 to [`MAX_PAGE`].
pub(crate) fn parse_limit(v: &str) -> ApiResult<u32> {
    v.parse::<u32>()
        .ok()
        .filter(|l| (1..=MAX_PAGE).contains(l))
        .ok_or_else(|| ApiError::bad_field("limit", "must be a whole number from 1 to 1000"))
}

/// The whole number ≥ 0 given as `key`, else `default`.
pub(crate) fn query_i64(q: &Option<String>, key: &str, default: i64) -> ApiResult<i64> {
    match pairs(q)?.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_field(key, "must be a whole number ≥ 0")),
    }
}

/// Adds the statuses of one `status` value (`running` or `queued,running`) to `into`. An
/// empty value or entry (`status=`, `a,,b`) is refused like an unknown status: it names none
/// of `JobStatus`'s values, which is what the spec's `enum` says.
pub(crate) fn push_statuses(
    v: &str,
    into: &mut Vec<hpcsera_api_types::JobStatus>,
) -> ApiResult<()> {
    for s in v.split(',').map(str::trim) {
        let status = s.parse().map_err(|e| {
            if s.is_empty() {
                ApiError::bad_field("status", "is empty: name one or more job statuses")
            } else {
                ApiError::bad_field("status", e)
            }
        })?;
        into.push(status);
    }
    Ok(())
}

/// An opaque page cursor: `base64url("<kind><seq>")`, the kind a letter per listing.
pub(crate) fn encode_cursor(kind: char, seq: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}{seq}"))
}

/// The sequence number of a cursor of `kind` (`None` for anything else).
pub(crate) fn decode_cursor(kind: char, c: &str) -> Option<i64> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    std::str::from_utf8(&raw)
        .ok()?
        .strip_prefix(kind)?
        .parse()
        .ok()
}

/// An RFC 3339 time given as `key`, as Unix milliseconds.
pub(crate) fn parse_time(key: &str, v: &str) -> ApiResult<i64> {
    hpcsera_store::parse_rfc3339_ms(v)
        .ok_or_else(|| ApiError::bad_field(key, "must be an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_comma_separated_and_an_empty_one_is_refused() {
        use hpcsera_api_types::JobStatus;
        let mut v = Vec::new();
        push_statuses("queued, running", &mut v).unwrap();
        assert_eq!(v, [JobStatus::Queued, JobStatus::Running]);
        for bad in ["", "queued,", ",running", "queued,,running", "sleeping"] {
            assert!(push_statuses(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        assert_eq!(decode_cursor('j', &encode_cursor('j', 12345)), Some(12345));
        assert_eq!(decode_cursor('p', &encode_cursor('j', 12345)), None);
        assert_eq!(decode_cursor('j', "not a cursor"), None);
        assert_eq!(decode_cursor('j', ""), None);
    }
}
