//! The manifests as one multi-document YAML text: a comment saying where they come from,
//! which Secrets to create and which components are not deployed, then one document per
//! object, each after `---`.

use std::fmt::Write as _;

use super::Manifests;

/// The YAML text of `manifests`, rendered from the configuration file named `file_name`.
pub fn to_yaml(manifests: &Manifests, file_name: &str) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    let ns = &manifests.namespace;
    let _ = writeln!(
        out,
        "# stoa-backup in namespace {ns}: rendered by `stoa-backup manifests` from {file_name}."
    );
    let _ = writeln!(out, "# Image: {}", manifests.image);
    out.push_str(
        "# Do not edit: change the configuration and render again, then\n\
         # `kubectl apply --server-side --field-manager=stoa-backup -f <this file>`.\n",
    );
    if !manifests.secrets.is_empty() {
        let _ = writeln!(
            out,
            "#\n# Secrets the pods read, to create in {ns} first (values are never written here):"
        );
        for (secret, keys) in &manifests.secrets {
            let _ = writeln!(out, "#   {secret}");
            for (key, k) in keys {
                let optional = if k.optional { ", optional" } else { "" };
                let _ = writeln!(
                    out,
                    "#     {key}: {}{optional} ({})",
                    k.provides,
                    k.used_by.join(", ")
                );
            }
        }
    }
    if !manifests.not_deployed.is_empty() {
        out.push_str("#\n# Not deployed (no schedule):\n");
        for n in &manifests.not_deployed {
            let _ = writeln!(out, "#   {} ({}): {}", n.component, n.trigger, n.reason);
        }
    }
    for d in &manifests.documents {
        out.push_str("---\n");
        let text = serde_saphyr::to_string(d)?;
        out.push_str(text.strip_prefix("---\n").unwrap_or(&text));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}
