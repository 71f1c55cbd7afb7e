//! The keys every component has, whatever its type (see [`Common`]): the trigger, the keep
//! rules, the storage target and its replicas, verification, RPO and labels.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Text;

/// `retention:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Keep the last N runs.
    pub last: Option<Spanned<u32>>,
    /// Keep one run per hour (not supported by the library's keep rules: refused).
    pub hourly: Option<Spanned<RawCount>>,
    /// One run per day, for N days.
    pub daily: Option<Spanned<RawCount>>,
    /// One run per ISO week, for N weeks.
    pub weekly: Option<Spanned<RawCount>>,
    /// One run per month, for N months.
    pub monthly: Option<Spanned<RawCount>>,
    /// One run per year, for N years.
    pub yearly: Option<Spanned<RawCount>>,
    /// Every run of the last duration (`30d`).
    pub within: Option<Text>,
    /// Every run, forever.
    pub forever: Option<Spanned<bool>>,
}

/// A count of calendar buckets: a number or `unlimited`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawCount {
    /// A number.
    Count(i64),
    /// A word (`unlimited`).
    Word(String),
}

/// What every component has, whatever its type.
#[derive(Debug, Default)]
pub struct Common {
    /// 5-field cron expression.
    pub schedule: Option<Text>,
    /// IANA time zone of the schedule.
    pub time_zone: Option<Text>,
    /// Back up on every change instead of on a schedule.
    pub on_change: Option<Spanned<bool>>,
    /// Keep rules.
    pub retention: Option<Spanned<RawRetention>>,
    /// The storage target's name.
    pub storage: Option<Text>,
    /// Whether the provider's verifier checks each artifact (default true).
    pub verify: Option<Spanned<bool>>,
    /// Recovery point objective.
    pub rpo: Option<Text>,
    /// Labels of the runs.
    pub labels: Option<BTreeMap<String, Text>>,
    /// The storage targets its runs are copied to (overrides the top level's).
    pub replicate_to: Option<Spanned<RawReplicateTo>>,
}

/// `replicate_to:` (at the top level, or a component's): the storage targets a component's
/// complete, verified runs are copied to. One name, or a list (`[]`: none, which turns the
/// top level's off for a component).
#[derive(Debug)]
pub enum RawReplicateTo {
    /// One name (`replicate_to: dr`); where it is written is the `Spanned` around it.
    One(String),
    /// A list, each name with where it is written.
    Many(Vec<Text>),
}

impl<'de> Deserialize<'de> for RawReplicateTo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawReplicateTo;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a storage target's name, or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawReplicateTo, E> {
                Ok(RawReplicateTo::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawReplicateTo, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Text>()? {
                    names.push(name);
                }
                Ok(RawReplicateTo::Many(names))
            }
        }
        d.deserialize_any(V)
    }
}
