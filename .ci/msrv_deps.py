#!/usr/bin/env python3
"""Fails when a resolved dependency declares a rust-version newer than the workspace's.

Reads `cargo metadata --format-version 1` on stdin. Offline and quick: it checks what
dependencies declare, not that they build with that toolchain (crates without a
rust-version are counted, not checked).
"""
import json
import sys


def version(text):
    parts = [int(part) for part in text.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
resolved = {node["id"] for node in meta["resolve"]["nodes"]}
packages = [p for p in meta["packages"] if p["id"] in resolved]
msrvs = {p.get("rust_version") for p in packages if p["id"] in members}
if len(msrvs) != 1 or None in msrvs:
    sys.exit(f"workspace members must all declare the same rust-version, found {msrvs}")
msrv = msrvs.pop()
newer = [
    f"{p['name']} {p['version']} needs Rust {p['rust_version']}"
    for p in packages
    if p.get("rust_version") and version(p["rust_version"]) > version(msrv)
]
undeclared = sum(1 for p in packages if not p.get("rust_version"))
if newer:
    sys.exit(f"dependencies newer than the declared MSRV {msrv}:\n  " + "\n  ".join(newer))
print(
    f"MSRV {msrv}: {len(packages)} packages resolved, none declares a newer rust-version "
    f"({undeclared} declare none)"
)
