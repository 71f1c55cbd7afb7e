//! `${ENV}` interpolation in configuration values: `${NAME}`, `${NAME:-default}` (the default
//! when the variable is unset or empty) and `$$` for a literal `$`.

/// Why a value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${NAME}` names a variable that is not set.
    Unset(String),
    /// `${` without its `}`, or a name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    Malformed(String),
}

/// The value with every reference replaced, and whether it had any reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpolated {
    /// The value.
    pub value: String,
    /// Whether a `${…}` reference was in it (a secret must come from one, or from a file).
    pub referenced: bool,
    /// The variables referenced, in order, each with whether its reference gives a default
    /// (`${NAME:-default}`): what a deployment must provide (`manifests`).
    pub variables: Vec<(String, bool)>,
}

/// Replaces `${NAME}` and `${NAME:-default}` with `lookup(NAME)`, `$$` with `$`.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, InterpolationError> {
    let mut value = String::with_capacity(text.len());
    let mut referenced = false;
    let mut variables = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        value.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or_else(|| {
                InterpolationError::Malformed(format!(
                    "`${{` without a closing `}}` in {:?}",
                    shorten(text)
                ))
            })?;
            let reference = &inner[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            if !is_variable_name(name) {
                return Err(InterpolationError::Malformed(format!(
                    "`${{{name}}}` is not a variable reference: names are letters, digits and _ (not first a digit)"
                )));
            }
            referenced = true;
            variables.push((name.to_string(), default.is_some()));
            match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => value.push_str(d),
                (Some(v), _) => value.push_str(&v),
                (None, Some(d)) => value.push_str(d),
                (None, None) => return Err(InterpolationError::Unset(name.to_string())),
            }
            rest = &inner[end + 1..];
        } else {
            value.push('$');
            rest = after;
        }
    }
    value.push_str(rest);
    Ok(Interpolated {
        value,
        referenced,
        variables,
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Texts in messages are shortened: a malformed value may be long.
fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_defaults_and_escapes() {
        let i = |t: &str| interpolate(t, &env).unwrap();
        assert_eq!(
            i("postgres://${HOST}:5432").value,
            "postgres://db.example:5432"
        );
        assert!(i("${HOST}").referenced);
        assert!(!i("plain").referenced);
        assert_eq!(i("${UNSET:-fallback}").value, "fallback");
        assert_eq!(i("${EMPTY:-fallback}").value, "fallback");
        assert_eq!(i("${EMPTY}").value, "");
        assert_eq!(i("${HOST:-x}").value, "db.example");
        assert_eq!(i("cost $$5 and $x").value, "cost $5 and $x");
        assert!(!i("$${HOST}").referenced);
        assert_eq!(i("$${HOST}").value, "${HOST}");
        assert_eq!(
            i("${HOST}:${UNSET:-5432}/$${NOT}").variables,
            [("HOST".to_string(), false), ("UNSET".to_string(), true)]
        );
    }

    #[test]
    fn unset_and_malformed_references_are_errors() {
        assert_eq!(
            interpolate("a ${NOPE} b", &env),
            Err(InterpolationError::Unset("NOPE".into()))
        );
        assert!(matches!(
            interpolate("${HOST", &env),
            Err(InterpolationError::Malformed(_))
        ));
        assert!(matches!(
            interpolate("${1X}", &env),
            Err(InterpolationError::Malformed(_))
        ));
        assert!(matches!(
            interpolate("${}", &env),
            Err(InterpolationError::Malformed(_))
        ));
    }
}
