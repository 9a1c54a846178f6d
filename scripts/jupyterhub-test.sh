#!/usr/bin/env bash
# Throwaway JupyterHub for the end-to-end tests: real OS users, LocalProcessSpawner, and
# fractal_jupyter loaded in every single-user server.
#
#   scripts/jupyterhub-test.sh start     install what is missing, start the hub, print the env file
#   scripts/jupyterhub-test.sh restart   `systemctl restart` of a unit with KillMode=process: TERM
#                                        the hub's main process (nothing else), wait for its end,
#                                        and start the hub again on the ports, passwords and token
#                                        of the last `start` (its env file), so that the proxy and
#                                        the servers the last hub left running are found again;
#                                        the users are those of the last start, and so are
#                                        FRACTAL_HUB_SERVER_CONFIG, FRACTAL_HUB_KEEP_SERVERS and
#                                        FRACTAL_HUB_CGROUP unless its environment sets them
#   scripts/jupyterhub-test.sh stop      stop exactly what `start` started (recorded pids)
#
# Root only (the hub must setuid to the users). Idempotent. Everything lives under $FRACTAL_HUB_DIR
# (default <repo>/.tmp/hub when the hub users can read the checkout, else /tmp/fractal-jupyter-hub):
#   venv/    the hub AND single-user environment, built from /usr/bin/python3 (a python the users
#            can execute: the repo's .venv may link to a python in root's home, closed to them),
#            with jupyterhub, ipykernel and fractal_jupyter (editable when the users can read
#            the checkout)
#   npm/     configurable-http-proxy
#   state/   (mode 700) the hub's sqlite db, cookie secret, pid files, log, and `env`
#
# Settings (environment of `start`, `restart`):
#   FRACTAL_HUB_USERS          OS users allowed on the hub (default "alice bob"), created if missing
#   FRACTAL_HUB_ADMIN          the hub admin (default "hubadmin"), created as an OS user if missing
#   FRACTAL_HUB_INSTALL        editable|copy: how fractal_jupyter goes into the venv (default:
#                              editable when the users can read the checkout, else a copy)
#   FRACTAL_HUB_SERVER_CONFIG  JSON written as the single-user servers' jupyter_server config
#                              (e.g. '{"FractalJupyter": {"db_url": "postgresql+asyncpg://..."}}'),
#                              in <venv>/etc/jupyter/jupyter_server_config.json (readable by the users)
#   SLURM_CONF                 passed on to the single-user servers (and so to their jobs' sbatch,
#                              squeue, scancel): the private configuration of the test cluster
#                              (scripts/slurm-cluster.sh), which is not in /etc/slurm
#   FRACTAL_HUB_KEEP_SERVERS   1: the hub leaves the servers and the proxy running when it stops
#                              (cleanup_servers and cleanup_proxy False: the set-up of a hub under
#                              systemd with KillMode=process, docs/deploy-jupyterhub.md section 5)
#   FRACTAL_HUB_CGROUP         a cgroup directory (e.g. /sys/fs/cgroup/systemd/<name>): the hub is
#                              started in it, and so is everything it starts (the proxy, the user
#                              servers and their jobs), as in the cgroup of a systemd unit
#
# `start` and `restart` print one line on stdout: the path of the env file (mode 600), which
# holds HUB_URL, HUB_API_URL, HUB_USER_PASSWORD, HUB_ADMIN_PASSWORD, HUB_SERVICE_TOKEN, HUB_DIR,
# HUB_VENV, HUB_USERS, HUB_ADMIN, HUB_LOG, HUB_PORTS, HUB_KEEP_SERVERS, HUB_CGROUP. Everything
# else goes to stderr.
# Exit codes: 0 ok, 1 failure, 2 usage, 3 cannot run here (not root, no node/npm).
set -euo pipefail
umask 022

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$REPO/tests/e2e/hub/jupyterhub_config.py"
USERS="${FRACTAL_HUB_USERS:-alice bob}"
ADMIN="${FRACTAL_HUB_ADMIN:-hubadmin}"
PY=/usr/bin/python3
HUB_PKGS="jupyterhub==6.1.1 ipykernel"
CHP_PKG="configurable-http-proxy@5.3.0"   # engines node >= 20; 4.6.3 for older node
CLEAN_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf 'jupyterhub-test: %s\n' "$*" >&2; }
die() {
    local code="$1"
    shift
    log "error: $*"
    exit "$code"
}

# Can OS user $1 read the checkout (every parent directory traversable)?
user_reads_repo() {
    runuser -u "$1" -- test -r "$REPO/fractal_jupyter/__init__.py" 2>/dev/null
}

choose_dir() {
    if [[ -n "${FRACTAL_HUB_DIR:-}" ]]; then
        HUB_DIR="$FRACTAL_HUB_DIR"
    elif user_reads_repo "${USERS%% *}"; then
        HUB_DIR="$REPO/.tmp/hub"
    else
        HUB_DIR=/tmp/fractal-jupyter-hub
    fi
    VENV="$HUB_DIR/venv"
    NPM_PREFIX="$HUB_DIR/npm"
    STATE="$HUB_DIR/state"
}

ensure_users() {
    local u
    for u in $USERS $ADMIN; do
        id "$u" >/dev/null 2>&1 && continue
        log "creating the OS user $u"
        useradd --create-home --shell /bin/bash "$u"
        # not locked (sshd refuses locked accounts), no password
        usermod -p '*' "$u"
    done
}

# The users execute the venv's python and read its files: make every level traversable.
open_dirs() {
    local dir="$HUB_DIR"
    mkdir -p "$HUB_DIR"
    while [[ "$dir" != / ]]; do
        [[ "$dir" == "$REPO" || "$dir" == /tmp ]] && break
        chmod o+rx "$dir"
        dir="$(dirname "$dir")"
    done
}

# pip, without the noise of this machine's pip config (find-links folders that do not exist)
quiet_pip() {
    local status
    set +e
    "$VENV/bin/pip" -q "$@" 2>&1 | grep -v "^WARNING: Location '" >&2
    status=("${PIPESTATUS[@]}")
    set -e
    return "${status[0]}"
}

ensure_venv() {
    local stamp editable=1
    case "${FRACTAL_HUB_INSTALL:-}" in
    copy) editable=0 ;;
    editable) ;;
    "") user_reads_repo "${USERS%% *}" || editable=0 ;;
    *) die 2 "FRACTAL_HUB_INSTALL must be 'editable' or 'copy', not '$FRACTAL_HUB_INSTALL'" ;;
    esac
    # reinstall fractal_jupyter when its dependencies (pyproject.toml) or the install mode change
    stamp="$VENV/.fractal-$(cksum <"$REPO/pyproject.toml" | cut -d' ' -f1)-$editable"
    if [[ -f "$stamp" ]]; then
        # a copy does not follow the checkout: refresh it (an editable install does)
        if ((!editable)); then
            quiet_pip install --no-deps --force-reinstall "$REPO" || die 1 "pip install failed"
        fi
        return 0
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV from $PY"
        "$PY" -m venv "$VENV"
        quiet_pip install --upgrade pip
    fi
    local target=("$REPO")
    ((editable)) && target=(-e "$REPO")
    log "installing $HUB_PKGS and fractal_jupyter ($([[ $editable == 1 ]] && echo editable || echo copy)) into $VENV"
    # shellcheck disable=SC2086
    quiet_pip install $HUB_PKGS "${target[@]}" || die 1 "pip install failed"
    local u
    for u in $USERS; do
        runuser -u "$u" -- "$VENV/bin/python" -c 'import fractal_jupyter, jupyterhub' ||
            die 1 "user $u cannot import fractal_jupyter with $VENV/bin/python"
    done
    rm -f "$VENV"/.fractal-* && touch "$stamp"
}

ensure_chp() {
    CHP="$NPM_PREFIX/node_modules/.bin/configurable-http-proxy"
    [[ -x "$CHP" ]] && return 0
    command -v npm >/dev/null || die 3 "npm not found: configurable-http-proxy cannot be installed"
    log "installing $CHP_PKG into $NPM_PREFIX"
    mkdir -p "$NPM_PREFIX"
    npm install --silent --no-fund --no-audit --prefix "$NPM_PREFIX" "$CHP_PKG" >/dev/null 2>&1 ||
        die 1 "npm install $CHP_PKG failed"
}

# <venv>/etc/jupyter/jupyter_server_config.json: a config file of the environment, which the
# users cannot change (files in jupyter_server_config.d/ only ever enable extensions)
write_server_config() {
    local file="$VENV/etc/jupyter/jupyter_server_config.json"
    # a restart without a new configuration keeps the last one
    [[ -z "${FRACTAL_HUB_SERVER_CONFIG+set}" && "$1" == again && -f "$file" ]] && return 0
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "${FRACTAL_HUB_SERVER_CONFIG:-{\}}" |
        "$VENV/bin/python" -c 'import json, sys; json.dump(json.load(sys.stdin), sys.stdout, indent=2)' \
            >"$file" || die 2 "FRACTAL_HUB_SERVER_CONFIG is not valid JSON"
    chmod 644 "$file"
}

hub_pid() {
    local pid
    pid="$(cat "$STATE/jupyterhub.pid" 2>/dev/null)" || return 1
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' </proc/"$pid"/cmdline | grep -q "$VENV/bin/jupyterhub" || return 1
    printf '%s\n' "$pid"
}

# env_value KEY: KEY's value in the env file of the last start
env_value() {
    sed -n "s/^$1=//p" "$STATE/env" 2>/dev/null | head -n 1
}

# cmd_start [again]: `again` (restart) reuses the ports and secrets of the last start, and its
# settings that are not in the environment
cmd_start() {
    local t0=$SECONDS again=0
    [[ "${1:-}" == again ]] && again=1
    [[ "$(id -u)" == 0 ]] || die 3 "must run as root (the hub setuids to the users)"
    [[ -x "$PY" ]] || die 3 "$PY not found"
    command -v node >/dev/null || die 3 "node not found (configurable-http-proxy needs node >= 20)"
    ensure_users
    choose_dir
    open_dirs
    ensure_venv
    # read by each server when it starts: a running hub's next spawns get the new settings
    write_server_config "${1:-}"
    if hub_pid >/dev/null; then
        log "the hub is already running (pid $(hub_pid)): reusing it"
        printf '%s\n' "$STATE/env"
        return 0
    fi
    ensure_chp
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    local ports cgroup="${FRACTAL_HUB_CGROUP-}" keep="${FRACTAL_HUB_KEEP_SERVERS-}"
    if ((again)); then
        [[ -n "${FRACTAL_HUB_CGROUP+set}" ]] || cgroup="$(env_value HUB_CGROUP)"
        [[ -n "${FRACTAL_HUB_KEEP_SERVERS+set}" ]] || keep="$(env_value HUB_KEEP_SERVERS)"
    fi
    [[ -z "$cgroup" || -w "$cgroup/cgroup.procs" ]] ||
        die 2 "FRACTAL_HUB_CGROUP=$cgroup is not a cgroup this user can move a process into"
    export HUB_STATE_DIR="$STATE" HUB_CHP="$CHP" HUB_PORT HUB_API_PORT HUB_PROXY_API_PORT
    export HUB_USERS="$USERS" HUB_ADMIN="$ADMIN" HUB_KEEP_SERVERS="${keep:-0}"
    export HUB_USER_PASSWORD HUB_ADMIN_PASSWORD HUB_SERVICE_TOKEN
    if ((again)); then
        # what the servers and the proxy the last hub left running know: its ports and secrets
        read -r HUB_PORT HUB_API_PORT HUB_PROXY_API_PORT <<<"$(env_value HUB_PORTS)"
        HUB_USER_PASSWORD="$(env_value HUB_USER_PASSWORD)"
        HUB_ADMIN_PASSWORD="$(env_value HUB_ADMIN_PASSWORD)"
        HUB_SERVICE_TOKEN="$(env_value HUB_SERVICE_TOKEN)"
        [[ -n "$HUB_PROXY_API_PORT" && -n "$HUB_SERVICE_TOKEN" ]] ||
            die 1 "$STATE/env lacks the ports or secrets of the last start: use start"
    else
        ports="$("$PY" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')"
        read -r HUB_PORT HUB_API_PORT HUB_PROXY_API_PORT <<<"$ports"
        secret() { "$PY" -c "import secrets; print(secrets.token_hex($1))"; }
        HUB_USER_PASSWORD="$(secret 8)"
        HUB_ADMIN_PASSWORD="$(secret 20)"
        HUB_SERVICE_TOKEN="$(secret 32)"
    fi
    (
        umask 077
        cat >"$STATE/env" <<ENV
HUB_URL=http://127.0.0.1:$HUB_PORT
HUB_API_URL=http://127.0.0.1:$HUB_PORT/hub/api
HUB_USER_PASSWORD=$HUB_USER_PASSWORD
HUB_ADMIN_PASSWORD=$HUB_ADMIN_PASSWORD
HUB_SERVICE_TOKEN=$HUB_SERVICE_TOKEN
HUB_DIR=$HUB_DIR
HUB_VENV=$VENV
HUB_USERS=$USERS
HUB_ADMIN=$ADMIN
HUB_LOG=$STATE/jupyterhub.log
HUB_PORTS=$HUB_PORT $HUB_API_PORT $HUB_PROXY_API_PORT
HUB_KEEP_SERVERS=$HUB_KEEP_SERVERS
HUB_CGROUP=$cgroup
ENV
    )

    # A clean PATH: the spawner passes the hub's PATH on to the servers, kernels and jobs, and
    # root's own entries (pyenv shims in /root) would leak into them.
    # The hub's cgroup first: the hub and all it starts are then in it. `exec setsid` keeps
    # the pid (the subshell leads no process group, so setsid does not fork).
    # A restarted hub's log goes on after the last one's.
    cd "$STATE"
    ((again)) || : >"$STATE/jupyterhub.log"
    (
        [[ -z "$cgroup" ]] || echo "$BASHPID" >"$cgroup/cgroup.procs"
        export PATH="$VENV/bin:$CLEAN_PATH" VIRTUAL_ENV="$VENV"
        exec setsid "$VENV/bin/jupyterhub" -f "$TEMPLATE"
    ) >>"$STATE/jupyterhub.log" 2>&1 </dev/null 9<&- &
    echo $! >"$STATE/jupyterhub.launcher.pid"
    cd "$REPO"
    local i
    for i in $(seq 1 240); do
        if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
            "http://127.0.0.1:$HUB_PORT/hub/api/" 2>/dev/null; then
            log "hub up at http://127.0.0.1:$HUB_PORT/ after $((SECONDS - t0)) s (log $STATE/jupyterhub.log)"
            printf '%s\n' "$STATE/env"
            return 0
        fi
        kill -0 "$(cat "$STATE/jupyterhub.launcher.pid")" 2>/dev/null || {
            tail -n 40 "$STATE/jupyterhub.log" >&2
            die 1 "the hub exited; log above"
        }
        sleep 0.25
    done
    die 1 "the hub did not answer within 60 s (log $STATE/jupyterhub.log)"
}

# kill_pid PID PATTERN: TERM, then KILL after 15 s; only if /proc/PID/cmdline contains PATTERN
kill_pid() {
    local pid="$1" pat="$2" i state
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 0
    tr '\0' ' ' </proc/"$pid"/cmdline | grep -qF -- "$pat" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 60); do
        state="$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" || return 0
        [[ -z "$state" || "$state" == Z ]] && return 0
        sleep 0.25
    done
    log "pid $pid ($pat) ignored TERM: KILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_restart() {
    [[ "$(id -u)" == 0 ]] || die 3 "must run as root (the hub setuids to the users)"
    choose_dir
    [[ -f "$STATE/env" ]] || die 1 "no earlier start to restart ($STATE/env does not exist)"
    # the users and the admin of the last start (the folder is chosen by the first user)
    USERS="$(env_value HUB_USERS)"
    ADMIN="$(env_value HUB_ADMIN)"
    choose_dir
    # only the main process: what it leaves running depends on FRACTAL_HUB_KEEP_SERVERS
    kill_pid "$(cat "$STATE/jupyterhub.pid" 2>/dev/null)" "$VENV/bin/jupyterhub"
    kill_pid "$(cat "$STATE/jupyterhub.launcher.pid" 2>/dev/null)" "$VENV/bin/jupyterhub"
    cmd_start again
}

cmd_stop() {
    choose_dir
    [[ -d "$STATE" ]] || {
        log "nothing to stop ($STATE does not exist)"
        return 0
    }
    # the user servers the hub recorded, read before the hub clears them
    local user_pids=""
    if [[ -x "$VENV/bin/python" && -f "$STATE/jupyterhub.sqlite" ]]; then
        user_pids="$("$VENV/bin/python" - "$STATE/jupyterhub.sqlite" <<'PY' 2>/dev/null || true
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for (state,) in db.execute("select state from spawners where state is not null"):
    pid = (json.loads(state) if isinstance(state, str) else {}).get("pid")
    if pid:
        print(pid)
PY
)"
    fi
    # the hub stops the user servers and the proxy itself (cleanup_servers, cleanup_proxy)
    kill_pid "$(cat "$STATE/jupyterhub.pid" 2>/dev/null)" "$VENV/bin/jupyterhub"
    kill_pid "$(cat "$STATE/jupyterhub.launcher.pid" 2>/dev/null)" "$VENV/bin/jupyterhub"
    kill_pid "$(cat "$STATE/jupyterhub-proxy.pid" 2>/dev/null)" "configurable-http-proxy"
    local pid
    for pid in $user_pids; do kill_pid "$pid" "jupyterhub.singleuser"; done
    rm -f "$STATE/jupyterhub.pid" "$STATE/jupyterhub.launcher.pid" "$STATE/jupyterhub-proxy.pid"
    log "stopped"
}

(($# == 1)) || {
    printf 'usage: %s start|restart|stop\n' "$0" >&2
    exit 2
}
case "$1" in
start) cmd_start ;;
restart) cmd_restart ;;
stop) cmd_stop ;;
*)
    printf 'usage: %s start|restart|stop\n' "$0" >&2
    exit 2
    ;;
esac
