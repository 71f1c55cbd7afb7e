//! Percent-decoding for the fake servers: paths, query strings and form bodies.

/// Decodes `%XX` escapes (an invalid escape is kept as it is); `+` stays a plus, as in paths.
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// The S3 fake decodes paths only.
#[cfg(any(
    feature = "grafana",
    feature = "infisical",
    feature = "keycloak",
    feature = "kube",
    feature = "vault"
))]
/// Decodes a query or form component: `+` is a space, then `%XX` escapes.
pub(crate) fn decode_form(s: &str) -> String {
    decode(&s.replace('+', " "))
}

#[cfg(any(
    feature = "grafana",
    feature = "infisical",
    feature = "keycloak",
    feature = "kube",
    feature = "vault"
))]
/// The decoded `key=value` pairs of a query string or form body, in order.
pub(crate) fn form_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode_form(k), decode_form(v))
    })
}

#[cfg(test)]
#[cfg(any(
    feature = "grafana",
    feature = "infisical",
    feature = "keycloak",
    feature = "kube",
    feature = "vault"
))]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_plus_and_forms_turn_it_into_a_space() {
        assert_eq!(decode("a%20b/c+d"), "a b/c+d");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%zz%41"), "%zzA");
        assert_eq!(decode_form("%2Fa+b%2B"), "/a b+");
        let pairs: Vec<(String, String)> =
            form_pairs("limit=5&labelSelector=tier+in+%28a%2Cb%29&flag&&x=").collect();
        assert_eq!(
            pairs,
            [
                ("limit".into(), "5".into()),
                ("labelSelector".into(), "tier in (a,b)".into()),
                ("flag".into(), "".into()),
                ("x".into(), "".into()),
            ]
        );
    }
}
