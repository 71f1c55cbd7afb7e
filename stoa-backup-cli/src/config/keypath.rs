//! The key path (`components.postgres.retention.daily`) of a line of a block-style YAML
//! document, to name the key of a parser error that only knows its line.

/// The dotted path of the mapping keys that enclose `line` (1-based), ending with the key
/// on that line if it has one. Block style only: in a flow collection (`{a: 1}`) the path
/// stops at the key the collection belongs to. `None` when the line has no key around it.
pub fn key_path_at(source: &str, line: u64) -> Option<String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (number, text) in source.lines().enumerate() {
        let number = number as u64 + 1;
        if number > line {
            break;
        }
        let indent = text.len() - text.trim_start_matches(' ').len();
        let content = text[indent..].trim_end();
        if content.is_empty() || content.starts_with('#') || content == "---" {
            continue;
        }
        // A sequence item belongs to the key above it, even at that key's indentation;
        // a mapping inside the item starts after the dash.
        let (indent, content) = match content.strip_prefix("- ") {
            Some(rest) => (indent + 2, rest.trim_start()),
            None if content == "-" => (indent + 2, ""),
            None => (indent, content),
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        if let Some(key) = mapping_key(content) {
            stack.push((indent, key));
        }
    }
    (!stack.is_empty()).then(|| {
        stack
            .iter()
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// The key of `key: value` / `key:` (quotes removed), if the text starts with one.
fn mapping_key(content: &str) -> Option<String> {
    if content.starts_with(['{', '[', '#', '|', '>']) {
        return None;
    }
    let (key, _) = if let Some(quote @ ('"' | '\'')) = content.chars().next() {
        let close = content[1..].find(quote)? + 1;
        let (k, rest) = content.split_at(close + 1);
        if !(rest.starts_with(": ") || rest == ":" || rest.starts_with(":\t")) {
            return None;
        }
        (k.trim_matches(quote), rest)
    } else {
        let colon = content
            .match_indices(':')
            .map(|(i, _)| i)
            .find(|&i| matches!(content[i + 1..].chars().next(), None | Some(' ' | '\t')))?;
        content.split_at(colon)
    };
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
storage:
  backups:
    type: local
    path: /var/backups

components:
  postgres:
    type: postgres
    url: \"postgres://db:5432/stoa\"
    retention: {daily: 30}
    labels:
      'team': ops
encryption:
  recipients:
  - age1abc
  - age1def
";

    #[test]
    fn paths_of_lines() {
        let at = |l| key_path_at(DOC, l);
        assert_eq!(at(1), None);
        assert_eq!(at(2).as_deref(), Some("storage"));
        assert_eq!(at(4).as_deref(), Some("storage.backups.type"));
        assert_eq!(at(5).as_deref(), Some("storage.backups.path"));
        assert_eq!(at(9).as_deref(), Some("components.postgres.type"));
        assert_eq!(at(10).as_deref(), Some("components.postgres.url"));
        assert_eq!(at(11).as_deref(), Some("components.postgres.retention"));
        assert_eq!(at(13).as_deref(), Some("components.postgres.labels.team"));
        assert_eq!(at(16).as_deref(), Some("encryption.recipients"));
    }

    #[test]
    fn urls_and_quoted_colons_are_not_keys() {
        assert_eq!(mapping_key("url: http://x:1/y").as_deref(), Some("url"));
        assert_eq!(mapping_key("\"a:b\": 1").as_deref(), Some("a:b"));
        assert_eq!(mapping_key("http://x"), None);
        assert_eq!(mapping_key("{a: 1}"), None);
        assert_eq!(mapping_key("plain"), None);
    }
}
