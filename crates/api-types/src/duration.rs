//! Durations as people write them: `90` or `90s`, `15m`, `2h`, `1h30m`, `1d` — one parser for
//! every flag, file and field that takes a duration (the CLI's `--timeout`, the admin's
//! `--expires` and ages, job resources' `duration`).

/// Parses a duration into whole seconds: a bare number of seconds, or numbers each followed
/// by a unit `d`, `h`, `m` or `s` (`1h30m`). Refuses anything else and overflow.
pub fn parse_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 90s, 15m, 2h, 1h30m, 1d)");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_secs;

    #[test]
    fn forms() {
        assert_eq!(parse_secs("90"), Ok(90));
        assert_eq!(parse_secs("90s"), Ok(90));
        assert_eq!(parse_secs("1h30m"), Ok(5_400));
        assert_eq!(parse_secs("2d"), Ok(172_800));
        assert_eq!(parse_secs(" 15m "), Ok(900));
        for bad in [
            "",
            "m",
            "5x",
            "10m5",
            "1.5h",
            "-1s",
            "99999999999999999999d",
        ] {
            assert!(parse_secs(bad).is_err(), "{bad:?}");
        }
    }
}
