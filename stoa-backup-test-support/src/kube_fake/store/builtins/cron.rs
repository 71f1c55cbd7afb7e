//! CronJob schedules as the API server parses them (robfig/cron's standard parser): five
//! fields, or a descriptor (`@daily`, `@every 1h`, …). Day of week is 0-6 (7 is refused),
//! names (`JAN`, `SUN`) in any case, `*` and `?`, ranges, lists and steps; no `L`, `W` or
//! `#`. Errors are worded as robfig's.

const FIELDS: [(&str, u32, u32, &[&str]); 5] = [
    ("minute", 0, 59, &[]),
    ("hour", 0, 23, &[]),
    ("day of month", 1, 31, &[]),
    (
        "month",
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (
        "day of week",
        0,
        6,
        &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    ),
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Why `schedule` is refused, if it is.
pub(super) fn check(schedule: &str) -> Result<(), String> {
    let spec = schedule.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if let Some(rest) = spec
        .strip_prefix("TZ=")
        .or_else(|| spec.strip_prefix("CRON_TZ="))
    {
        let (_, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        return check(rest);
    }
    if spec.starts_with('@') {
        if DESCRIPTORS.contains(&spec) {
            return Ok(());
        }
        if let Some(d) = spec.strip_prefix("@every ") {
            return if d.trim().is_empty() {
                Err(format!("failed to parse duration {spec}"))
            } else {
                Ok(())
            };
        }
        return Err(format!("unrecognized descriptor: {spec}"));
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            fields.len()
        ));
    }
    for (field, (_, min, max, names)) in fields.iter().zip(FIELDS) {
        for part in field.split(',') {
            check_part(part, min, max, names)?;
        }
    }
    Ok(())
}

fn check_part(part: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (part, None),
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else {
        let mut bounds = range.splitn(2, '-');
        let start = value(bounds.next().unwrap_or_default(), names, part)?;
        let end = match bounds.next() {
            Some(e) => value(e, names, part)?,
            None => start,
        };
        (start, end)
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {part}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {part}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {part}"
        ));
    }
    if let Some(s) = step {
        match s.parse::<u32>() {
            Ok(0) => return Err(format!("step of range should be a positive number: {part}")),
            Ok(_) => {}
            Err(_) => return Err(format!("failed to parse int from {s}: {part}")),
        }
    }
    Ok(())
}

fn value(text: &str, names: &[&str], part: &str) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Months count from 1, days of week from 0.
        let first = if names.len() == 12 { 1 } else { 0 };
        return Ok(i as u32 + first);
    }
    text.parse::<u32>()
        .map_err(|_| format!("failed to parse int from {text}: {part}"))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn standard_schedules_parse_and_others_are_refused_as_robfig_does() {
        for ok in [
            "0 2 * * *",
            "*/15 9-17 * JAN-MAR mon-fri",
            "0 3 * * SUN",
            "0 0 1 * ?",
            "@daily",
            "@every 1h30m",
            "TZ=UTC 0 2 * * *",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check("0 0 * * 7"),
            Err("end of range (7) above maximum (6): 7".into())
        );
        assert!(check("0 2 * *")
            .unwrap_err()
            .contains("expected exactly 5 fields"));
        assert!(check("0 0 L * *").is_err());
        assert!(check("0 0 * * 1#2").is_err());
        assert!(check("*/0 * * * *").is_err());
        assert!(check("5-1 * * * *").is_err());
        assert!(check("@sometimes").is_err());
    }
}
