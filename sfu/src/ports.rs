//! The UDP port range (`--rtc-ports MIN-MAX`): the media socket binds the first free port of
//! it (every participant shares that one socket, see [`crate::net`]).

use std::ops::RangeInclusive;

/// Parses `MIN-MAX` (MIN ≤ MAX, MIN > 0).
pub fn parse_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (min, max) = text
        .split_once('-')
        .ok_or_else(|| format!("expected MIN-MAX, got {text:?}"))?;
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|_| format!("{s:?} is not a port number"))
    };
    let (min, max) = (port(min)?, port(max)?);
    if min == 0 || min > max {
        return Err(format!("invalid port range {min}-{max}"));
    }
    Ok(min..=max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("40000-40100"), Ok(40000..=40100));
        assert_eq!(parse_range("5000-5000"), Ok(5000..=5000));
        assert!(parse_range("0-10").is_err());
        assert!(parse_range("10-5").is_err());
        assert!(parse_range("10").is_err());
        assert!(parse_range("a-b").is_err());
    }
}
