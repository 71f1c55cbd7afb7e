//! Schedules: 5-field cron expressions (minute hour day-of-month month day-of-week) in UTC
//! or a named IANA time zone, parsed and checked by croner.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// A checked schedule.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    time_zone: Tz,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?} {})", self.expression, self.time_zone)
    }
}

impl Schedule {
    /// Parses `expression` (exactly five fields; names such as `MON` or `JAN` allowed) in
    /// `time_zone` (an IANA name such as `Europe/Paris`; `None` is UTC). The error says
    /// which part is wrong: the expression or the zone.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        if fields != 5 {
            return Err(ScheduleError::Expression(format!(
                "{expression:?} has {fields} field(s); a schedule has 5: minute hour day-of-month month day-of-week (e.g. \"0 2 * * *\" for 02:00 every day)"
            )));
        }
        check_ranges(expression)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| ScheduleError::Expression(format!("{expression:?}: {e}")))?;
        let time_zone = match time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ScheduleError::TimeZone(format!(
                    "{name:?} is not an IANA time zone (e.g. UTC, Europe/Paris, America/New_York)"
                ))
            })?,
        };
        Ok(Schedule {
            expression: expression.split_whitespace().collect::<Vec<_>>().join(" "),
            time_zone,
            cron,
        })
    }

    /// The expression, fields separated by one space.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is read in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The first time the schedule fires strictly after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.time_zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Schedule", 3)?;
        st.serialize_field("cron", &self.expression)?;
        st.serialize_field("time_zone", self.time_zone.name())?;
        st.serialize_field("next", &self.next_after(Utc::now()).map(|t| t.to_rfc3339()))?;
        st.end()
    }
}

/// The five fields, their names and ranges (day-of-week 7 is Sunday, as 0).
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Names the field and the number when a number is out of its field's range (croner only
/// says that one is); names (`MON`, `JAN`) and croner's extensions are left to croner.
fn check_ranges(expression: &str) -> Result<(), ScheduleError> {
    for (field, (name, min, max)) in expression.split_whitespace().zip(FIELDS) {
        for part in field.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            if let Some(step) = step.and_then(|s| s.parse::<u32>().ok()) {
                if step == 0 {
                    return Err(ScheduleError::Expression(format!(
                        "{expression:?}: the {name} step /0 never advances"
                    )));
                }
            }
            for bound in range.split('-') {
                if let Ok(n) = bound.parse::<u32>() {
                    if n < min || n > max {
                        return Err(ScheduleError::Expression(format!(
                            "{expression:?}: {name} {n} is out of range {min}-{max}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// What is wrong with a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cron expression.
    Expression(String),
    /// The time zone.
    TimeZone(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_fires_in_the_named_zone() {
        let daily = Schedule::parse("0 2 * * *", None).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        assert_eq!(
            daily.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 3, 2, 2, 0, 0).unwrap())
        );
        let paris = Schedule::parse("0 2 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            paris.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap())
        );
        let weekly = Schedule::parse("0  3 * *   SUN", None).unwrap();
        assert_eq!(weekly.expression(), "0 3 * * SUN");
        assert_eq!(
            weekly.next_after(at),
            Some(Utc.with_ymd_and_hms(2026, 3, 8, 3, 0, 0).unwrap())
        );
    }

    #[test]
    fn field_counts_ranges_and_zones_are_checked() {
        for bad in [
            "0 2 * *",
            "0 0 2 * * *",
            "@daily",
            "",
            "61 * * * *",
            "0 24 * * *",
            "0 0 32 * *",
            "0 0 * 13 *",
            "0 0 * * 8",
            "x * * * *",
        ] {
            assert!(
                matches!(
                    Schedule::parse(bad, None),
                    Err(ScheduleError::Expression(_))
                ),
                "{bad:?}"
            );
        }
        let e = Schedule::parse("0 2 * *", None).unwrap_err();
        assert!(format!("{e:?}").contains("4 field"), "{e:?}");
        let e = Schedule::parse("0 25 * * *", None).unwrap_err();
        assert!(
            format!("{e:?}").contains("hour 25 is out of range 0-23"),
            "{e:?}"
        );
        let e = Schedule::parse("*/0 * * * *", None).unwrap_err();
        assert!(format!("{e:?}").contains("minute step /0"), "{e:?}");
        let e = Schedule::parse("0 0 1-32 * *", None).unwrap_err();
        assert!(format!("{e:?}").contains("day-of-month 32"), "{e:?}");
        assert!(Schedule::parse("*/15 9-17 * JAN-MAR MON-FRI", None).is_ok());
        assert!(Schedule::parse("0 0 * * 7", None).is_ok());
        assert!(matches!(
            Schedule::parse("0 2 * * *", Some("Mars/Olympus")),
            Err(ScheduleError::TimeZone(_))
        ));
    }
}
