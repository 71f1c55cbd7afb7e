//! `manifests`: prints the Kubernetes manifests generated from the configuration (see
//! [`crate::manifests`]): multi-document YAML, or with `--json` one document holding the
//! objects, the Secrets to create and the components not deployed.

use std::path::Path;

use super::{config_error, failed, load_config, print_json, usage_error};
use crate::cli::Cli;
use crate::config::{ConfigError, DEFAULT, EMBEDDED};
use crate::manifests::{self, Options};
use crate::outcome::Outcome;

/// Renders and prints the manifests for `namespace` and `image`.
pub fn run(cli: &Cli, namespace: &str, image: &str) -> Outcome {
    if !manifests::valid_namespace(namespace) {
        return usage_error(
            cli,
            &format!("--namespace {namespace:?} is not a namespace name (lowercase letters, digits and -, at most 63)"),
        );
    }
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        return usage_error(cli, &format!("--image {image:?} is not an image reference"));
    }
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    // The ConfigMap holds the file as written: its references, never their values.
    let source = if config.file == EMBEDDED {
        DEFAULT.to_string()
    } else {
        match std::fs::read_to_string(&config.file) {
            Ok(s) => s,
            Err(e) => {
                return config_error(
                    cli,
                    &ConfigError::file(
                        &config.file,
                        format!("cannot read the configuration again: {e}"),
                    ),
                )
            }
        }
    };
    let rendered = match manifests::render(&config, &source, Options { namespace, image }) {
        Ok(m) => m,
        Err(e) => return config_error(cli, &e),
    };
    let labels: Vec<String> = rendered.documents.iter().map(|d| d.label()).collect();
    tracing::info!(documents = %labels.join(", "), "rendered the manifests");
    if cli.json {
        print_json(Outcome::Success.verdict(), &rendered);
        return Outcome::Success;
    }
    let file_name = Path::new(&config.file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.file.clone());
    match manifests::to_yaml(&rendered, &file_name) {
        Ok(text) => {
            print!("{text}");
            Outcome::Success
        }
        Err(e) => failed(cli, &format!("cannot write the manifests as YAML: {e}")),
    }
}
