#!/usr/bin/env bash
# Starts moto's standalone S3 server (PyPI `moto[server]`) on a random free loopback port,
# in the background, and prints its endpoint (e.g. http://127.0.0.1:40123) on stdout.
#
#   export STOA_TEST_S3_ENDPOINT="$(scripts/moto-server.sh /tmp/moto.pid)"
#   cargo test -p stoa-backup-storage --features s3 --test s3_sink
#   kill "$(cat /tmp/moto.pid)"
#
# The optional argument is a file to write the server's pid to (default:
# <venv>/moto-<port>.pid); the log goes to <venv>/moto-<port>.log. The virtualenv lives
# under $CARGO_TARGET_DIR/moto-venv (or target/moto-venv) and is created and filled once:
# later runs reuse it. Everything except the endpoint goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CARGO_TARGET_DIR:-$root/target}/moto-venv"
pid_file="${1:-}"

command -v python3 >/dev/null 2>&1 || {
    echo "moto-server: needs python3 with venv (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
}

if ! "$venv/bin/moto_server" --help >/dev/null 2>&1; then
    echo "moto-server: installing moto[server] into $venv" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]' >&2
fi

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
endpoint="http://127.0.0.1:$port"
log="$venv/moto-$port.log"
pid_file="${pid_file:-$venv/moto-$port.pid}"

nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "moto-server: moto_server exited; its log ($log):" >&2
        cat "$log" >&2
        exit 1
    fi
    if "$venv/bin/python" - "$endpoint" >/dev/null 2>&1 <<'EOF'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass  # any HTTP answer means it is up
EOF
    then
        echo "moto-server: moto_server (pid $pid) answers at $endpoint; log: $log" >&2
        echo "$endpoint"
        exit 0
    fi
    sleep 0.2
done

echo "moto-server: moto_server did not answer at $endpoint within 20 s; its log ($log):" >&2
cat "$log" >&2
kill "$pid" 2>/dev/null || true
exit 1
