//! Memory sizes and durations as people write them, and back: `4G`, `512M`, `1h30m`,
//! `1-00:00:00`. One parser for the API, the agent's config and the CLI; one formatter for
//! messages.
//!
//! Pure functions.

/// The largest memory size accepted: 1 EiB.
pub const MAX_MEMORY_BYTES: u64 = 1 << 60;
/// The longest duration accepted: 366 days.
pub const MAX_DURATION_SECONDS: u64 = 366 * 86_400;

/// A memory size: a whole number of bytes, or a number followed by a unit `K`, `M`, `G`,
/// `T` or `P` (powers of 1024, as Slurm, PBS and LSF read them; `Ki`, `KiB`, `KB` and
/// lower case mean the same). `"4G"` is 4 GiB.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 19 {
        return Err(format!(
            "{s:?} is not a memory size (bytes, or a number with K, M, G, T or P, e.g. \"4G\")"
        ));
    }
    let n: u64 = t[..digits]
        .parse()
        .map_err(|_| format!("{s:?} is too large"))?;
    let unit = t[digits..].trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .or_else(|| unit.strip_suffix('I'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit; use K, M, G, T or P (powers of 1024)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .filter(|b| *b <= MAX_MEMORY_BYTES)
        .ok_or_else(|| format!("{s:?} is more than 1 EiB"))
}

/// A duration: what [`crate::duration::parse_secs`] reads (seconds `"3600"`, numbers with
/// units `d`, `h`, `m`, `s`: `"1h30m"`, `"90m"`, `"2d"`), or a clock `HH:MM:SS` or
/// `D-HH:MM:SS` (as Slurm's and PBS's walltimes are written); at most 366 days.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a duration (seconds, \"1h30m\", \"90m\", \"HH:MM:SS\" or \"D-HH:MM:SS\")"
        )
    };
    if t.is_empty() || t.len() > 32 {
        return Err(bad());
    }
    let secs = if t.contains(':') {
        parse_clock(t).ok_or_else(bad)?
    } else {
        crate::duration::parse_secs(t).map_err(|_| bad())?
    };
    if secs > MAX_DURATION_SECONDS {
        return Err(format!("{s:?} is longer than 366 days"));
    }
    Ok(secs)
}

/// `HH:MM:SS` or `D-HH:MM:SS`; minutes and seconds below 60, hours below 24 after a day.
fn parse_clock(t: &str) -> Option<u64> {
    let (days, clock) = match t.split_once('-') {
        Some((d, c)) => (number(d)?, c),
        None => (0, t),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let [h, m, s] = parts[..] else { return None };
    let (h, m, s) = (number(h)?, number(m)?, number(s)?);
    if m >= 60 || s >= 60 || (t.contains('-') && h >= 24) {
        return None;
    }
    days.checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(m * 60 + s)
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A duration for people: `1h30m`, `2d`, `45s`, `0s`.
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// A memory size for people: the largest unit that divides it (`4G`, `1536M`), else bytes.
pub fn format_memory(bytes: u64) -> String {
    for (unit, shift) in [("P", 50), ("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let size = 1u64 << shift;
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}

/// Whole MiB, rounded up (what the schedulers are given).
pub fn mib_rounded_up(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// `H:MM:SS` with hours counting past 24 (PBS `walltime`).
pub fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `D-HH:MM:SS` (Slurm `--time`).
pub fn d_hms(secs: u64) -> String {
    format!(
        "{}-{:02}:{:02}:{:02}",
        secs / 86_400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// Whole minutes, rounded up (LSF `-W`).
pub fn minutes_rounded_up(secs: u64) -> u64 {
    secs.div_ceil(60)
}
