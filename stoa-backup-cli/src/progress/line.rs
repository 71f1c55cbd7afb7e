//! The text of a transfer's progress line, from plain numbers: bytes done (of the expected
//! size), rate and ETA. Pure, so that it is tested without a terminal.

use std::time::Duration;

/// Before this much time the rate (and so the ETA) is noise: not shown.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(500);

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // 1023.96 KiB would print as "1024.0 KiB": go up a unit before rounding does.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration as a person reads an ETA: `9s`, `4m05s`, `2h03m`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The average rate since the transfer started, in bytes per second; `None` before
/// [`MIN_RATE_WINDOW`] or before the first byte.
pub fn rate(done: u64, elapsed: Duration) -> Option<f64> {
    (elapsed >= MIN_RATE_WINDOW && done > 0).then(|| done as f64 / elapsed.as_secs_f64())
}

/// The time left to reach `expected` at `rate`; `None` without a rate or once past it
/// (the expected size was only an estimate).
pub fn eta(done: u64, expected: u64, rate: f64) -> Option<Duration> {
    (done <= expected && rate > 0.0)
        .then(|| Duration::from_secs_f64((expected - done) as f64 / rate))
}

/// The line beside a transfer's bar or spinner: `12.0 MiB of 40.0 MiB, 3.0 MiB/s, ETA 9s`,
/// `52.0 MiB (last run 40.0 MiB), 3.0 MiB/s` once past the expected size, `12.0 MiB,
/// 3.0 MiB/s` without one.
pub fn progress_line(done: u64, expected: Option<u64>, elapsed: Duration) -> String {
    let mut line = match expected {
        Some(e) if done <= e => format!("{} of {}", human_bytes(done), human_bytes(e)),
        Some(e) => format!("{} (last run {})", human_bytes(done), human_bytes(e)),
        None => human_bytes(done),
    };
    if let Some(rate) = rate(done, elapsed) {
        line.push_str(&format!(", {}/s", human_bytes(rate as u64)));
        if let Some(left) = expected.and_then(|e| eta(done, e, rate)) {
            line.push_str(&format!(", ETA {}", human_duration(left)));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 * MIB + MIB / 10 * 3), "12.3 MiB");
        assert_eq!(human_bytes(MIB - 1), "1.0 MiB", "no 1024.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * MIB), "5.0 TiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations_read_as_an_eta() {
        assert_eq!(human_duration(Duration::from_millis(900)), "0s");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 3600 + 3 * 60 + 59)),
            "2h03m"
        );
    }

    #[test]
    fn the_rate_waits_for_a_window_and_a_first_byte() {
        assert_eq!(rate(MIB, Duration::from_millis(100)), None);
        assert_eq!(rate(0, Duration::from_secs(3)), None);
        assert_eq!(
            rate(4 * MIB, Duration::from_secs(2)),
            Some(2.0 * MIB as f64)
        );
    }

    #[test]
    fn the_eta_is_what_is_left_at_the_rate() {
        assert_eq!(eta(10, 30, 2.0), Some(Duration::from_secs(10)));
        assert_eq!(eta(30, 30, 2.0), Some(Duration::ZERO));
        assert_eq!(eta(31, 30, 2.0), None, "past the estimate");
        assert_eq!(eta(10, 30, 0.0), None);
    }

    #[test]
    fn the_line_shows_bytes_rate_and_eta_against_the_expected_size() {
        let line = progress_line(12 * MIB, Some(40 * MIB), Duration::from_secs(4));
        assert_eq!(line, "12.0 MiB of 40.0 MiB, 3.0 MiB/s, ETA 9s");
    }

    #[test]
    fn past_the_expected_size_the_line_says_so_and_gives_no_eta() {
        let line = progress_line(52 * MIB, Some(40 * MIB), Duration::from_secs(4));
        assert_eq!(line, "52.0 MiB (last run 40.0 MiB), 13.0 MiB/s");
    }

    #[test]
    fn without_an_expected_size_the_line_has_bytes_and_rate_only() {
        let line = progress_line(12 * MIB, None, Duration::from_secs(4));
        assert_eq!(line, "12.0 MiB, 3.0 MiB/s");
    }

    #[test]
    fn at_the_start_the_line_has_no_rate_yet() {
        assert_eq!(
            progress_line(0, Some(2048), Duration::ZERO),
            "0 B of 2.0 KiB"
        );
        assert_eq!(progress_line(100, None, Duration::from_millis(10)), "100 B");
    }
}
