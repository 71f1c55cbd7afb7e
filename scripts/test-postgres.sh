#!/usr/bin/env bash
# Starts (or stops) a throwaway PostgreSQL cluster configured for tests, as PostgreSQL's
# documentation describes under "Non-Durable Settings": fsync, synchronous_commit and
# full_page_writes off, checkpoints rare. Nothing on it survives a crash of the machine,
# which is what a test server wants: no write waits for the disk, and a template clone
# (`CREATE DATABASE ... STRATEGY FILE_COPY`, what `PgSnapshot` and `TestDatabases` use)
# copies at the speed of the page cache instead of the disk's.
#
#   export STOA_TEST_DATABASE_URL="$(scripts/test-postgres.sh start)"
#   cargo test -p stoa-backup-testing
#   scripts/test-postgres.sh stop
#
# `start [DIR] [PORT]`: initialises DIR once and starts the server on 127.0.0.1:PORT
# (default 5433; trust authentication, user postgres, its socket in DIR), printing its URL
# on stdout. DIR defaults to a cluster already initialised in one of the two places below,
# else /dev/shm/stoa-test-postgres when that tmpfs has more than 4 GiB free (gone after a
# reboot), else $CARGO_TARGET_DIR/test-postgres or target/test-postgres. A server
# already running from DIR is reused. Shared buffers and every other setting stay at the
# defaults of the installed PostgreSQL, so only durability differs from a stock server.
# `stop [DIR]` stops it (the files stay for the next start); `url [DIR]` prints the URL.
# Run as root, the cluster belongs to the `postgres` user (initdb refuses root). Everything
# except the URL goes to stderr.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
action="${1:-start}"
# A tmpfs when it has room: on a disk, fsync=off lets the dirty pages pile up until the
# kernel throttles every writer (measured here: a pool checkout 237 ms on the disk against
# 11 ms on /dev/shm and 24 ms on the stock server).
# A cluster already initialised in either place is the one meant, so that `stop` and `url`
# find it whatever the tmpfs has left free since `start`.
disk_dir="${CARGO_TARGET_DIR:-$root/target}/test-postgres"
shm_dir=/dev/shm/stoa-test-postgres
if [ -f "$shm_dir/PG_VERSION" ]; then
    default_dir="$shm_dir"
elif [ -f "$disk_dir/PG_VERSION" ]; then
    default_dir="$disk_dir"
elif [ -d /dev/shm ] && [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -gt 4194304 ] 2>/dev/null; then
    default_dir="$shm_dir"
else
    default_dir="$disk_dir"
fi
dir="${2:-$default_dir}"
port="${3:-5433}"

bindir=""
if command -v pg_config >/dev/null 2>&1; then
    bindir="$(pg_config --bindir)"
fi
if [ ! -x "$bindir/initdb" ]; then
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [ ! -x "$bindir/initdb" ]; then
    echo "test-postgres: no initdb found (Debian: apt-get install postgresql)" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

url_of() {
    local p
    p="$(sed -n "s/^port *= *'\{0,1\}\([0-9]*\).*/\1/p" "$dir/postgresql.conf" 2>/dev/null | tail -n 1)"
    echo "postgres://postgres@127.0.0.1:${p:-$port}/postgres"
}

case "$action" in
start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        # The server must reach its directory through every parent.
        d="$dir"
        while [ "$d" != / ]; do
            d="$(dirname "$d")"
            chmod o+x "$d" 2>/dev/null || true
        done
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        echo "test-postgres: initialising $dir" >&2
        as_owner "$bindir/initdb" -D "$dir" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >&2
        # Appended to postgresql.conf, where ALTER SYSTEM (postgresql.auto.conf) leaves it.
        as_owner tee -a "$dir/postgresql.conf" >/dev/null <<EOF
# scripts/test-postgres.sh: a test server, not durable (PostgreSQL docs, Non-Durable Settings)
fsync = off
synchronous_commit = off
full_page_writes = off
max_wal_size = 8GB
checkpoint_timeout = 1h
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
EOF
    fi
    if as_owner "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        echo "test-postgres: already running from $dir" >&2
    else
        as_owner "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >&2 || {
            echo "test-postgres: the server did not start; its log ($dir/server.log):" >&2
            tail -n 30 "$dir/server.log" >&2
            exit 1
        }
    fi
    url_of
    ;;
stop)
    if [ -f "$dir/PG_VERSION" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w stop >&2 || true
    fi
    ;;
url)
    url_of
    ;;
*)
    echo "usage: $0 start|stop|url [DIR] [PORT]" >&2
    exit 2
    ;;
esac
