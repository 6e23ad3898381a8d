//! Bounds on text the server stores or answers with: cutting to a byte length on a character
//! boundary, the check of short labels an agent sends about itself, and showing control
//! characters as escapes (for terminals and for web pages that show names from archives).

use crate::FieldError;

/// Most bytes of `agentVersion` and `agentHost`.
pub const MAX_AGENT_LABEL_BYTES: usize = 200;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut_to_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks an agent's self-description (`agentVersion`, `agentHost`): at most
/// [`MAX_AGENT_LABEL_BYTES`] bytes, no control characters (NUL, escapes, newlines).
pub fn check_agent_label(field: &str, value: Option<&str>) -> Result<(), FieldError> {
    let Some(v) = value else { return Ok(()) };
    if v.len() > MAX_AGENT_LABEL_BYTES {
        return Err(FieldError::new(
            field,
            format!("is longer than {MAX_AGENT_LABEL_BYTES} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "contains a control character (NUL, escape, newline …)",
        ));
    }
    Ok(())
}

/// Whether `c` would be interpreted by a terminal rather than shown, or would reorder what is
/// shown: C0 controls (newline and tab too), DEL, C1 controls, and the bidirectional overrides.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character shown as an escape (`\n`, `\t`, `\x1b`, `\u{9b}`), so
/// that text from elsewhere cannot move a terminal's cursor, clear the screen, set the window
/// title, or hide or reorder what it says.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if is_unsafe(c) && (c as u32) < 0x80 => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_unsafe(c) => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    std::borrow::Cow::Owned(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary() {
        assert_eq!(cut_to_bytes("abc", 5), "abc");
        assert_eq!(cut_to_bytes("abc", 2), "ab");
        assert_eq!(cut_to_bytes("aé", 2), "a");
        assert_eq!(cut_to_bytes("éé", 3), "é");
    }

    #[test]
    fn agent_labels_are_short_and_printable() {
        assert!(check_agent_label("agentHost", None).is_ok());
        assert!(check_agent_label("agentHost", Some("login1.example.org")).is_ok());
        assert!(check_agent_label("agentHost", Some("a\0b")).is_err());
        assert!(check_agent_label("agentHost", Some("a\x1b[2Jb")).is_err());
        assert!(check_agent_label("agentHost", Some("a\u{9b}b")).is_err());
        let long = "x".repeat(201);
        assert_eq!(
            check_agent_label("agentVersion", Some(&long))
                .unwrap_err()
                .field,
            "agentVersion"
        );
    }
}
