#!/usr/bin/env bash
# A throw-away PostgreSQL server for the ledger's tests and benchmark, private to this checkout.
#
#   scripts/postgres.sh start   install PostgreSQL if it is missing (Debian packages; needs root), create a
#                               cluster in .pg/ on first use, start it on a unix socket only (no TCP port,
#                               so checkouts side by side never collide), create the database, and print
#                               its SQLAlchemy URL on stdout. Everything else goes to stderr.
#   scripts/postgres.sh stop    stop the server
#   scripts/postgres.sh bin     install PostgreSQL if it is missing, print the directory of its programs
#                               (initdb, pg_ctl, postgres); tests/private_postgres.py starts its own
#                               throw-away clusters with them and never touches the one in .pg/
#
# PostgreSQL refuses to run as root: when run as root the cluster belongs to the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PGROOT="${PROMO_PG_DIR:-$ROOT/.pg}"
DATA="$PGROOT/data"
SOCKETS="$PGROOT/run"
DB=promo_test
log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && { dirname "$(command -v pg_ctl)"; return 0; }
    return 1
}

BIN="$(find_bin || true)"
case "${1:-start}" in start|stop|bin) ;; *) log "usage: $0 start|stop|bin"; exit 2 ;; esac
if [ -z "$BIN" ] && [ "${1:-start}" = stop ]; then
    exit 0
fi
if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "PostgreSQL is not installed and this is not root: install it (apt-get install postgresql) and retry"
        exit 1
    fi
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN="$(find_bin)"
fi
if [ "${1:-start}" = bin ]; then
    echo "$BIN"
    exit 0
fi

# As root, every server command runs as the postgres user (created by the Debian package).
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
SUPERUSER=$([ "$(id -u)" = 0 ] && echo postgres || id -un)

case "${1:-start}" in
stop)
    [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
    exit 0 ;;
start) ;;
esac

# The socket path must fit in 107 bytes; a very deep checkout puts the cluster under /tmp instead.
if [ ${#SOCKETS} -gt 90 ]; then
    PGROOT="/tmp/promo-pg-$(echo "$ROOT" | sha1sum | cut -c1-12)"; DATA="$PGROOT/data"; SOCKETS="$PGROOT/run"
fi
mkdir -p "$PGROOT" "$SOCKETS"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$PGROOT" "$SOCKETS"
    # the postgres user must be able to reach the cluster through the checkout's parent directories
    if ! runuser -u postgres -- test -x "$PGROOT"; then
        log "the postgres user cannot reach $PGROOT; set PROMO_PG_DIR to a directory it can reach"; exit 1
    fi
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating a cluster in $DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust --encoding=UTF8 --no-locale >/dev/null
fi
if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    rm -f "$DATA/postmaster.pid"
    # Tuned for tests: no TCP, no durability wait (a crashed test cluster is simply rebuilt), room for
    # the concurrency tests' 32 threads plus 4 processes.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w -t 60 start \
        -o "-c listen_addresses='' -c unix_socket_directories='$SOCKETS' -c max_connections=200 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >&2 \
        || { log "the server did not start; its log:"; tail -n 30 "$PGROOT/server.log" >&2; exit 1; }
fi
PSQL=("$BIN/psql" -h "$SOCKETS" -U "$SUPERUSER" -d postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$(as_owner "${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    as_owner "${PSQL[@]}" -c "CREATE DATABASE $DB" >&2
fi
echo "postgresql+psycopg://$SUPERUSER@/$DB?host=$SOCKETS"
