#!/usr/bin/env bash
# Usage: scripts/dups-outside-tests.sh REPO_DIR (needs the `duplicates` tool on PATH).
# Counts duplicated blocks (duplicates, 6+ lines) outside tests: integration tests, the
# test-support crate and in-file `#[cfg(test)] mod tests` blocks are left out.
set -euo pipefail
repo="$1"; out="$(mktemp -d)"
cd "$repo"
git ls-files | grep -vE '(^|/)tests(/|\.rs$)|^stoa-backup-test-support/|^crates/stoa-backup-test-support/' | while read -r f; do
  mkdir -p "$out/$(dirname "$f")"
  if [[ "$f" == *.rs ]]; then
    awk 'prev ~ /^#\[cfg\(test\)\]$/ && $0 ~ /^mod tests/ {stop=1; exit} {if (NR>1) print prev; prev=$0} END {if (!stop && NR>0) print prev}' "$f" > "$out/$f"
  else
    cp "$f" "$out/$f"
  fi
done
duplicates --repo "$out" --most 200 --seconds 120 > "${DUPS_OUT:-/dev/null}.full" || true; head -1 "${DUPS_OUT:-/dev/null}.full" 2>/dev/null || duplicates --repo "$out" --most 1 --seconds 120 | head -1
rm -rf "$out"
