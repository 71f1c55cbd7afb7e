//! The check every recovery and drill of a PostgreSQL component runs: the row counts of the
//! restored database against those its backup recorded.

use stoa_backup::core::recovery::{CheckContext, CheckOutcome, FnCheck};
use stoa_backup::core::Check;
use stoa_backup::prelude::PgConnection;
use stoa_backup::providers::checks::RowCounts;
use stoa_backup::providers::postgres::{PostgresFacts, DUMP_CONTENT_TYPE};

/// A check that the tables of a restored PostgreSQL database hold the rows its backup
/// recorded: the library's [`RowCounts`] over every table the dump of `dumped` counted (read
/// from the restored run when the check runs), counted in `counted`.
pub(crate) fn row_counts_check(
    component: &str,
    conn: &PgConnection,
    counted: &str,
    dumped: &str,
) -> FnCheck {
    let name = format!("{component}: row counts of {counted}");
    let (component, conn, counted, dumped) = (
        component.to_string(),
        conn.clone(),
        counted.to_string(),
        dumped.to_string(),
    );
    FnCheck::new(name.clone(), move |ctx: CheckContext| {
        let (name, component, conn, counted, dumped) = (
            name.clone(),
            component.clone(),
            conn.clone(),
            counted.clone(),
            dumped.clone(),
        );
        async move {
            let mut recorded = None;
            for a in ctx
                .artifacts_of(&component)
                .filter(|a| a.content_type == DUMP_CONTENT_TYPE)
            {
                let facts: PostgresFacts = a.facts_as()?;
                if facts.database.as_deref() == Some(dumped.as_str()) {
                    recorded = Some(facts);
                    break;
                }
            }
            let Some(facts) = recorded else {
                return Ok(CheckOutcome::skipped(format!(
                    "the restored run holds no dump of '{dumped}' to compare with"
                )));
            };
            let Some(counts) = facts.row_counts else {
                return Ok(CheckOutcome::skipped(format!(
                    "the dump of '{dumped}' recorded no row counts{}",
                    facts
                        .exact_counts
                        .map(|why| format!(": {why}"))
                        .unwrap_or_default()
                )));
            };
            let tables: Vec<String> = counts
                .keys()
                .filter_map(|k| split_qualified(k))
                .filter(|(s, t)| !s.contains('.') && !t.contains('.'))
                .map(|(s, t)| format!("{s}.{t}"))
                .collect();
            if tables.is_empty() {
                return Ok(CheckOutcome::skipped(format!(
                    "the dump of '{dumped}' counted no table"
                )));
            }
            RowCounts::new(conn, tables)?
                .database(counted)
                .backed_up_as(dumped)
                .component(component)
                .named(name)
                .run(&ctx)
                .await
        }
    })
}

/// `schema.table` as the PostgreSQL facts key tables (each name plain, or double-quoted with
/// `""` for a quote), split into its two names.
fn split_qualified(key: &str) -> Option<(String, String)> {
    fn ident(s: &str) -> Option<(String, &str)> {
        if let Some(rest) = s.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = rest.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if matches!(chars.peek(), Some((_, '"'))) {
                        chars.next();
                        name.push('"');
                    } else {
                        return Some((name, &rest[i + 1..]));
                    }
                } else {
                    name.push(c);
                }
            }
            None
        } else {
            let end = s.find('.').unwrap_or(s.len());
            (end > 0).then(|| (s[..end].to_string(), &s[end..]))
        }
    }
    let (schema, rest) = ident(key)?;
    let (table, rest) = ident(rest.strip_prefix('.')?)?;
    rest.is_empty().then_some((schema, table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_into_their_two_names() {
        let split = |k| split_qualified(k);
        assert_eq!(
            split("public.items"),
            Some(("public".into(), "items".into()))
        );
        assert_eq!(
            split("public.\"Order Lines\""),
            Some(("public".into(), "Order Lines".into()))
        );
        assert_eq!(
            split("\"My\"\"Schema\".\"a.b\""),
            Some(("My\"Schema".into(), "a.b".into()))
        );
        for bad in [
            "items",
            "public.",
            ".items",
            "a.b.c",
            "\"open.items",
            "a.\"b\"x",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
