//! Unit tests of `restore`.

use super::*;

#[test]
fn derived_names_fit_postgres_limits() {
    let run = "20261124t080000z_1a2b3c";
    assert_eq!(
        derived_name("stoa", "_old_", run),
        "stoa_old_20261124t080000z_1a2b3c"
    );
    let long = "é".repeat(40);
    let n = derived_name(&long, "_old_", run);
    assert!(n.len() <= 63, "{}", n.len());
    assert!(n.ends_with(run));
}

#[test]
fn count_comparison_lists_differences() {
    let rec: BTreeMap<String, i64> = [("a.x".to_string(), 3), ("a.y".to_string(), 1)].into();
    let got: BTreeMap<String, i64> = [("a.x".to_string(), 2)].into();
    let d = compare_counts(&rec, &got);
    assert_eq!(d.len(), 2);
    assert!(d[0].contains("2 rows, backup had 3"));
    assert!(d[1].contains("missing"));
}
