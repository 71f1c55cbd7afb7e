//! The metrics scraped as Prometheus text and parsed back, after real pipeline runs into a
//! memory sink; the PrometheusRule checked against the metric names.

mod replication;
mod rule;
mod runs;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::BackupMetrics;
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::sink::MemorySink;
use crate::sources::FileSource;
use crate::verify::ChecksumVerifier;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a Prometheus text exposition (comments skipped), failing the test on a
/// line that does not parse.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("unparsable line: {line}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let brace = line
        .find('{')
        .filter(|&b| line.find(' ').is_some_and(|sp| b < sp));
    let Some(brace) = brace else {
        let (name, value) = line.split_once(' ')?;
        return Some(Sample {
            name: name.to_string(),
            labels: BTreeMap::new(),
            value: parse_value(value)?,
        });
    };
    let name = line[..brace].to_string();
    let mut rest = &line[brace + 1..];
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if let Some(after) = rest.strip_prefix('}') {
            rest = after;
            break;
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end + 1..];
    }
    Some(Sample {
        name,
        labels,
        value: parse_value(rest)?,
    })
}

/// A sample's value (a timestamp after it is ignored).
fn parse_value(text: &str) -> Option<f64> {
    match text.split_whitespace().next()? {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

/// The value of the one sample `name` with exactly `labels`, if there is one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let found: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .map(|s| s.value)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} twice: {found:?}");
    found.first().copied()
}

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    fn at(t: DateTime<Utc>) -> Self {
        TestClock(Arc::new(Mutex::new(t)))
    }
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
    fn metrics(&self) -> BackupMetrics {
        let clock = self.0.clone();
        BackupMetrics::with_clock(move || *clock.lock().unwrap())
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A pipeline backing up `file` as component `component` into `sink`, verified, compressed
/// and observed by `metrics`.
fn pipeline(
    component: &str,
    file: &Path,
    sink: &Arc<MemorySink>,
    metrics: &BackupMetrics,
) -> PipelineBuilder {
    Pipeline::builder()
        .source(FileSource::new(component, file, "data.bin"))
        .sink(sink.clone())
        .compression(crate::ZstdCodec::new(3).unwrap())
        .verifier(ChecksumVerifier::new())
        .attempts(1)
        .observer(metrics.observer())
}

#[test]
fn the_parser_reads_labels_escapes_and_floats() {
    let text = "# HELP x y\n# TYPE x gauge\n\
                x{component=\"a\\\"b\\\\c\\nd\",kind=\"plain\"} 1.5e+09\n\
                y 3\nz_bucket{le=\"+Inf\"} 2\nw{a=\"1\",} -4\n";
    let samples = parse(text);
    assert_eq!(
        value(
            &samples,
            "x",
            &[("component", "a\"b\\c\nd"), ("kind", "plain")]
        ),
        Some(1.5e9)
    );
    assert_eq!(value(&samples, "y", &[]), Some(3.0));
    assert_eq!(value(&samples, "z_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(value(&samples, "w", &[("a", "1")]), Some(-4.0));
    assert_eq!(value(&samples, "x", &[]), None);
}
