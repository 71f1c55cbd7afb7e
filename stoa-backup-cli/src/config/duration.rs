//! Durations as an operator writes them: `30d`, `24h`, `90m`, `2w`, `1d12h`.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A positive duration and the text it was written as (printed back as written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    duration: Duration,
    text: String,
}

impl HumanDuration {
    /// Parses `<number><unit>` pairs, units `s`, `m`, `h`, `d` (24 h) and `w` (7 d).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "{text:?} is not a duration: write a number and a unit (s, m, h, d, w), e.g. 30d, 24h or 1d12h"
            )
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut secs: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 || digits == rest.len() {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = rest[digits..].chars().next().ok_or_else(bad)?;
            let per = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(bad()),
            };
            secs = n
                .checked_mul(per)
                .and_then(|s| secs.checked_add(s))
                .ok_or_else(|| format!("{text:?} is too long a duration"))?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        if secs == 0 {
            return Err(format!("{text:?} is zero: a duration must be positive"));
        }
        Ok(HumanDuration {
            duration: Duration::from_secs(secs),
            text: text.to_string(),
        })
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The duration as chrono's, for the keep rules.
    pub fn chrono(&self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.duration.as_secs()).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds() {
        let secs = |t: &str| HumanDuration::parse(t).unwrap().duration().as_secs();
        assert_eq!(secs("30d"), 30 * 86_400);
        assert_eq!(secs("24h"), 86_400);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("2w"), 14 * 86_400);
        assert_eq!(secs("1d12h"), 36 * 3600);
        assert_eq!(secs("45s"), 45);
        assert_eq!(HumanDuration::parse("7d").unwrap().to_string(), "7d");
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for t in ["", "30", "d", "30x", "1.5h", "-3d", "3d 4h"] {
            let e = HumanDuration::parse(t).unwrap_err();
            assert!(e.contains("30d"), "{t}: {e}");
        }
        assert!(HumanDuration::parse("0h").unwrap_err().contains("positive"));
        assert!(HumanDuration::parse("99999999999999999999w").is_err());
    }
}
