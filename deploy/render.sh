#!/bin/sh
# Renders deploy/stoa-backup.yaml: the manifests of the example configuration
# (`stoa-backup config example`) for namespace stoa-system and the default image.
#
# `stoa-backup manifests` checks the configuration as the pods will, so every variable the
# example names must be set: placeholders here, which never reach the output (the manifests
# hold references to Secrets, not values). Run from anywhere; CARGO_TARGET_DIR is honoured.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build --quiet --bin stoa-backup
bin="${CARGO_TARGET_DIR:-target}/debug/stoa-backup"
"$bin" config example > "$tmp/stoa-backup.yaml"
env \
  DATABASE_URL=postgres://stoa@postgres.stoa-system.svc:5432/stoa \
  STOA_BACKUP_GIT_TOKEN=placeholder \
  STOA_BACKUP_AGE_RECIPIENT=age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p \
  KEYCLOAK_CLIENT_SECRET=placeholder \
  INFISICAL_UNIVERSAL_AUTH_CLIENT_ID=placeholder \
  INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET=placeholder \
  INFISICAL_PROJECT_ID=placeholder \
  GRAFANA_TOKEN=placeholder \
  "$bin" manifests --config "$tmp/stoa-backup.yaml" > deploy/stoa-backup.yaml
echo "wrote deploy/stoa-backup.yaml"
