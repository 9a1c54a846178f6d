#!/usr/bin/env bash
# Throwaway PostgreSQL server for the test suite.
#
#   scripts/postgres-test.sh start [DIR]   start (or reuse) the server, print its SQLAlchemy URL
#   scripts/postgres-test.sh stop [DIR]    stop the server and delete DIR
#
# `start` prints exactly one line on stdout, e.g.
#   postgresql+asyncpg://fractal:fractal@127.0.0.1:55432/fractal_test
# and everything else on stderr, so `URL=$(scripts/postgres-test.sh start)` works.
# asyncpg itself wants the scheme `postgresql://`: drop the `+asyncpg` for plain asyncpg/psql.
#
# Port: $FRACTAL_TEST_PG_PORT (default 55432). The server listens on 127.0.0.1 only; its unix
# socket lives in the data directory, so /var/run/postgresql is not needed.
# Role `fractal` (password `fractal`; CREATEDB and CREATEROLE, so that tests may make databases
# and the roles of row-level security of their own; pg_signal_backend, so that they may drop them)
# owns the database `fractal_test`. The bootstrap superuser is only reachable over the unix socket
# (peer auth).
#
# Data directory (DIR):
#   - not root: default <repo>/.tmp/postgres; the server runs as the current user.
#   - root: initdb refuses to run as root, so the server runs as the OS user `postgres`, which must
#     own DIR and be able to traverse its parents (a checkout under /root is not). The default is
#     therefore /tmp/fractal-jupyter-pg-<port>. If the Debian server binaries
#     (/usr/lib/postgresql/*/bin) are missing, they are installed with apt-get, without starting
#     Debian's default cluster; so is PgBouncer (for the test of transaction pooling).
# Durability is off (fsync, synchronous_commit, full_page_writes): this is for tests only.
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 cannot run a server here (no binaries and not root).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${FRACTAL_TEST_PG_PORT:-55432}"
# apt-get under one lock: `make test` runs test groups side by side that may all install.
APT="flock /tmp/fractal-jupyter-apt.lock apt-get -o DPkg::Lock::Timeout=600"
ROLE=fractal
PASSWORD=fractal
DATABASE=fractal_test

log() { printf 'postgres-test: %s\n' "$*" >&2; }
die() {
    local code="$1"
    shift
    log "error: $*"
    exit "$code"
}

usage() {
    printf 'usage: %s start|stop [DIR]\n' "$0" >&2
    exit 2
}

[[ "$PORT" =~ ^[0-9]+$ ]] || die 2 "FRACTAL_TEST_PG_PORT must be a number, got '$PORT'"

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

default_dir() {
    if ((IS_ROOT)); then
        printf '/tmp/fractal-jupyter-pg-%s\n' "$PORT"
    else
        printf '%s/.tmp/postgres\n' "$REPO"
    fi
}

find_bindir() {
    local dir
    # Newest major version first.
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

# Installs Debian packages (as root) without starting their services.
install_packages() {
    log "installing the Debian package(s) $*"
    command -v apt-get >/dev/null || die 3 "no apt-get to install $*"
    # policy-rc.d answering 101 keeps the package scripts from starting Debian's default cluster.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
    local rc=0
    {
        $APT update -qq &&
            DEBIAN_FRONTEND=noninteractive $APT install -y -qq "$@"
    } >&2 || rc=$?
    ((rc == 0)) || die 1 "apt-get install $* failed (exit $rc)"
}

# Runs a command as the OS user that owns the server (postgres when we are root), from a
# directory that user can read: pg_ctl and initdb complain when the cwd is not accessible.
# fd 9 (the lock below) is closed, else the server would inherit it and hold the lock forever.
as_owner() {
    if ((IS_ROOT)); then
        (cd / && runuser -u postgres -- "$@" 9<&-)
    else
        (cd / && "$@" 9<&-)
    fi
}

port_in_use() {
    (: <"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

is_running() {
    as_owner "$BINDIR/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

# Line 4 of postmaster.pid is the port the running server listens on.
running_port() {
    sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true
}

sql_literal() {
    printf "'%s'" "${1//\'/\'\'}"
}

# Runs the SQL on stdin as the bootstrap superuser, which initdb names after its OS user.
superuser_psql() {
    local superuser
    superuser="$(as_owner id -un)"
    as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DATA" -p "$PORT" -U "$superuser" \
        -d postgres
}

init_cluster() {
    log "initialising a new cluster in $DATA"
    as_owner "$BINDIR/initdb" -D "$DATA" -E UTF8 --no-locale --no-instructions --no-sync \
        --auth-local=peer --auth-host=scram-sha-256 >&2
    local socket_dir
    socket_dir="$(sql_literal "$DATA")"
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<CONF

# --- added by scripts/postgres-test.sh: a throwaway server for tests ---
listen_addresses = '127.0.0.1'
unix_socket_directories = $socket_dir
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

ensure_role_and_db() {
    superuser_psql <<SQL
SELECT format('CREATE ROLE %I', '$ROLE')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') \gexec
ALTER ROLE $ROLE WITH LOGIN CREATEDB CREATEROLE PASSWORD '$PASSWORD';
-- DROP DATABASE ... WITH (FORCE) ends the sessions on that database, autovacuum's workers
-- among them; a worker has no role, so only pg_signal_backend lets a non-superuser end it.
GRANT pg_signal_backend TO $ROLE;
SELECT format('CREATE DATABASE %I OWNER %I', '$DATABASE', '$ROLE')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE') \gexec
SQL
}

prepare_data_dir() {
    mkdir -p "$DATA" || die 1 "cannot create $DATA"
    if ((IS_ROOT)) && [[ ! -f "$DATA/PG_VERSION" ]]; then
        chown postgres: "$DATA"
    fi
    chmod 700 "$DATA"
    as_owner test -w "$DATA" ||
        die 1 "the server's OS user cannot write $DATA (are its parent directories traversable?)"
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        [[ -z "$(ls -A "$DATA")" ]] || die 1 "$DATA is neither empty nor a PostgreSQL data directory"
        init_cluster
    fi
}

cmd_start() {
    if ! BINDIR="$(find_bindir)"; then
        ((IS_ROOT)) || die 3 "no PostgreSQL server binaries (initdb, pg_ctl) under" \
            "/usr/lib/postgresql/*/bin, and only root may install them (apt-get install postgresql)"
        install_packages postgresql pgbouncer
        BINDIR="$(find_bindir)" || die 3 "postgresql installed, but no initdb/pg_ctl found"
    fi
    # The PgBouncer test (transaction pooling) runs the bouncer itself; as root it is installed.
    if ((IS_ROOT)) && [[ ! -x /usr/sbin/pgbouncer ]] && ! command -v pgbouncer >/dev/null; then
        install_packages pgbouncer
    fi
    if ((IS_ROOT)); then
        id postgres >/dev/null 2>&1 || die 3 "running as root needs the OS user 'postgres'"
    fi

    if is_running; then
        local actual
        actual="$(running_port)"
        [[ "$actual" == "$PORT" ]] ||
            die 1 "a server from $DATA is already running on port $actual, not $PORT: stop it first"
        log "already running on 127.0.0.1:$PORT (data in $DATA)"
    else
        port_in_use && die 1 "127.0.0.1:$PORT is already taken by another process" \
            "(set FRACTAL_TEST_PG_PORT to use another port)"
        prepare_data_dir
        log "starting on 127.0.0.1:$PORT (data in $DATA)"
        if ! as_owner "$BINDIR/pg_ctl" start -D "$DATA" -l "$DATA/server.log" -w -t 60 \
            -o "-p $PORT" >&2; then
            tail -n 20 "$DATA/server.log" >&2 || true
            die 1 "the server did not start (log: $DATA/server.log)"
        fi
    fi
    ensure_role_and_db
    printf 'postgresql+asyncpg://%s:%s@127.0.0.1:%s/%s\n' "$ROLE" "$PASSWORD" "$PORT" "$DATABASE"
}

cmd_stop() {
    if [[ ! -e "$DATA" ]]; then
        log "nothing to stop: $DATA does not exist"
        return 0
    fi
    # Refuse to delete anything that does not look like a data directory we made.
    if [[ ! -f "$DATA/PG_VERSION" && -n "$(ls -A "$DATA")" ]]; then
        die 1 "$DATA is not a PostgreSQL data directory: not deleting it"
    fi
    if [[ -f "$DATA/PG_VERSION" ]] && BINDIR="$(find_bindir)" && is_running; then
        log "stopping the server of $DATA"
        as_owner "$BINDIR/pg_ctl" stop -D "$DATA" -m fast -w >&2
    fi
    rm -rf -- "$DATA"
    log "removed $DATA"
}

(($# >= 1 && $# <= 2)) || usage
DATA="${2:-$(default_dir)}"
# Absolute, so the path written to postgresql.conf stays valid whatever the cwd is.
[[ "$DATA" == /* ]] || DATA="$PWD/$DATA"
DATA="${DATA%/}"
[[ -n "$DATA" ]] || die 2 "refusing to use / as the data directory"
# A unix socket path is limited to 107 bytes.
socket_path="$DATA/.s.PGSQL.$PORT"
((${#socket_path} <= 107)) || die 2 "data directory path too long for a unix socket: $DATA"

# Serialise concurrent calls (parallel test workers): flock on the parent directory, which
# exists and is readable, so no lock file has to be created or owned by anyone.
mkdir -p "$(dirname "$DATA")" || die 1 "cannot create the parent directory of $DATA"
if command -v flock >/dev/null; then
    exec 9<"$(dirname "$DATA")"
    flock 9
fi

case "$1" in
start) cmd_start ;;
stop) cmd_stop ;;
*) usage ;;
esac
