#!/usr/bin/env bash
# A throwaway single-node SLURM cluster (munged, slurmctld, slurmd from Debian) and a private
# sshd on 127.0.0.1, for the SLURM tests and benchmarks. Jobs are submitted as an unprivileged
# user that also logs in over SSH with a key.
#
#   scripts/slurm-cluster.sh start    install what is missing, start what is not running
#   scripts/slurm-cluster.sh stop     stop exactly what `start` started (pid files), nothing else
#   scripts/slurm-cluster.sh status   exit 0 when everything is up
#
# After `start`, $STATE/env holds shell assignments for tests (CI_USER, CI_SSH_HOST, CI_SSH_PORT,
# CI_SSH_KEY, CI_SSH_KNOWN_HOSTS, SLURM_CONF, SLURM_PARTITION, SLURM_NODE, SLURM_NODE_MEMORY_MB).
#
# Settings (environment): CLUSTER_USER [fractaluser], CLUSTER_SSH_PORT [2222],
# CLUSTER_SLURMCTLD_PORT [16817], CLUSTER_SLURMD_PORT [16818],
# CLUSTER_STATE [/var/lib/fractal-jupyter-test], CLUSTER_USER_PATHS: files the user must reach
# (e.g. a Python under /root): `start` grants the user, with an ACL, the right to traverse each
# folder on the way that it cannot traverse yet; `stop` revokes exactly those grants.
#
# The machine's own services are never touched: everything this cluster writes is under
# $STATE (its slurm.conf, spool and state folders, pid and log files, a munged with its own key
# and socket), and its daemons listen on ports of their own. Nothing is written under
# /etc/slurm, /etc/munge, /var/spool, /var/log or /run/munge, so a SLURM or munge already on
# the machine goes on as before. Every SLURM command must find the private configuration:
# `SLURM_CONF=$STATE/slurm/slurm.conf` (in the env file; the sshd sets it for its sessions).
#
# Exit codes: 0 ok, 1 failure, 2 usage, 3 cannot run here (not root, or no Debian packages).
set -euo pipefail

USER_NAME=${CLUSTER_USER:-fractaluser}
SSH_PORT=${CLUSTER_SSH_PORT:-2222}
SLURMCTLD_PORT=${CLUSTER_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${CLUSTER_SLURMD_PORT:-16818}
STATE=${CLUSTER_STATE:-/var/lib/fractal-jupyter-test}
# apt-get under one lock: `make test` runs test groups side by side that may all install.
APT="flock /tmp/fractal-jupyter-apt.lock apt-get -o DPkg::Lock::Timeout=600"
PIDS=$STATE/pids
SSHDIR=$STATE/ssh
MUNGE_DIR=$STATE/munge
MUNGE_SOCKET=$MUNGE_DIR/munged.socket
SLURM_DIR=$STATE/slurm
# Read by every SLURM command and daemon started from here (and passed on to the tests).
export SLURM_CONF=$SLURM_DIR/slurm.conf
PACKAGES="slurmctld slurmd slurm-client munge openssh-server acl"
STARTED_AT=$(date +%s%N)

say() { printf '[slurm-cluster %5ss] %s\n' "$(( ($(date +%s%N) - STARTED_AT) / 1000000 ))m" "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }
cannot() { say "CANNOT RUN HERE: $*"; exit 3; }

# ours NAME BINARY: print the pid we recorded for NAME if that process is alive and runs BINARY
# (a binary replaced by an upgrade shows as "<path> (deleted)").
ours() {
    local file=$PIDS/$1.pid pid exe
    [ -s "$file" ] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [ "${exe% (deleted)}" = "$(readlink -f "$2")" ] || return 1
    echo "$pid"
}

# ended PID: the process is gone, or a zombie that init has not reaped yet (init may be slow)
ended() {
    [ -d "/proc/$1" ] || return 0
    [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]
}

# until_true SECONDS WHAT COMMAND...: poll every 0.1 s
until_true() {
    local limit=$(( $1 * 10 )) what=$2 i
    shift 2
    for ((i = 0; i < limit; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    # EXPLAIN=COMMAND: what it prints at the time of the failure goes into the message.
    fail "gave up after ${limit}00 ms waiting for: $what${EXPLAIN:+ ($($EXPLAIN))}"
}

# adopt DAEMON_PIDFILE NAME BINARY: record the pid a daemon wrote, once it is alive
adopt() {
    local i pid
    for ((i = 0; i < 100; i++)); do
        if [ -s "$1" ]; then
            pid=$(tr -dc '0-9' <"$1")
            if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$3")" ]; then
                echo "$pid" >"$PIDS/$2.pid"
                return 0
            fi
        fi
        sleep 0.1
    done
    return 1
}

terminate() { # terminate NAME PID
    local i
    kill -TERM "$2" 2>/dev/null || return 0
    for ((i = 0; i < 200; i++)); do
        ended "$2" && { say "$1 (pid $2) stopped"; return 0; }
        sleep 0.05
    done
    say "$1 (pid $2) still running after 10 s: SIGKILL"
    kill -KILL "$2" 2>/dev/null || true
}

install_packages() {
    local missing="" package
    for package in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing="$missing $package"
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null || cannot "packages$missing are missing and there is no apt-get"
    say "installing$missing"
    # The postinst scripts would start Debian's own daemons: forbid that while installing.
    local policy_added=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    local status=0
    {
        DEBIAN_FRONTEND=noninteractive $APT update -qq &&
            DEBIAN_FRONTEND=noninteractive $APT install -y -qq --no-install-recommends $missing
    } >&2 || status=$?
    [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$status" = 0 ] || fail "apt-get failed (exit $status)"
}

# munge_works: a credential from our munged, decoded by it
munge_works() {
    munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET"
}

start_munge() {
    # munged refuses folders that others may write to: the key, seed, socket, log and pid
    # file all live in one folder of the munge user.
    install -d -o munge -g munge -m 0755 "$MUNGE_DIR"
    [ -s "$MUNGE_DIR/munge.key" ] ||
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$MUNGE_DIR/munge.key"
    chmod 0400 "$MUNGE_DIR/munge.key"
    local pid
    if pid=$(ours munged /usr/sbin/munged) && ! munge_works >/dev/null 2>&1; then
        say "munged (pid $pid) lost its socket: restarting it"
        terminate munged "$pid"
    fi
    if ours munged /usr/sbin/munged >/dev/null; then return 0; fi
    rm -f "$MUNGE_DIR/munged.pid" "$MUNGE_SOCKET"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" \
        --key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
        --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
    adopt "$MUNGE_DIR/munged.pid" munged /usr/sbin/munged || fail "munged did not start"
    say "munged started (socket $MUNGE_SOCKET)"
    until_true 10 "a munge credential" munge_works
}

write_slurm_conf() {
    local node cpus memory default_memory conf
    node=$(hostname -s)
    cpus=$(nproc)
    memory=$(( $(free -m | awk '/^Mem:/ {print $2}') * 95 / 100 )) # slurmd must never see less
    default_memory=$(( memory / cpus / 4 ))
    [ "$default_memory" -gt 1024 ] && default_memory=1024
    install -d -m 0755 "$SLURM_DIR" "$SLURM_DIR/slurmd" "$SLURM_DIR/run"
    install -d -o slurm -g slurm -m 0755 "$SLURM_DIR/slurmctld" "$SLURM_DIR/log"
    conf=$(mktemp)
    cat >"$conf" <<EOF
# Written by fractal-jupyter's scripts/slurm-cluster.sh: one node, no cgroups, no slurmdbd.
# Private to the test cluster: its own ports, munged socket, folders and files (all in $STATE).
ClusterName=fractaltest
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=${SLURMCTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${MUNGE_SOCKET}
MpiDefault=none
MailProg=/usr/bin/true
StateSaveLocation=${SLURM_DIR}/slurmctld
SlurmdSpoolDir=${SLURM_DIR}/slurmd
SlurmctldPidFile=${SLURM_DIR}/run/slurmctld.pid
SlurmdPidFile=${SLURM_DIR}/run/slurmd.pid
SlurmctldLogFile=${SLURM_DIR}/log/slurmctld.log
SlurmdLogFile=${SLURM_DIR}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${SLURM_DIR}/log/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job with no --mem takes the whole node and jobs run one at a time.
DefMemPerCPU=${default_memory}
SlurmdParameters=config_overrides
ReturnToService=2
# Refuse at sbatch time what this node can never run (instead of pending for ever).
EnforcePartLimits=ALL
# Schedule at every pass of slurmctld's 1-second loop (the default waits 3 s between passes).
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=100
MinJobAge=600
KillWait=5
InactiveLimit=0
Waittime=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} Sockets=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${memory} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s "$conf" "$SLURM_CONF"; then
        rm -f "$conf"
        return 1
    fi
    mv "$conf" "$SLURM_CONF"
    chmod 0644 "$SLURM_CONF"
    return 0
}

start_slurm() {
    local pid name
    if write_slurm_conf; then
        for name in slurmd slurmctld; do
            if pid=$(ours "$name" "/usr/sbin/$name"); then
                say "slurm.conf changed: restarting $name"
                terminate "$name" "$pid"
            fi
        done
    fi
    if ! ours slurmctld /usr/sbin/slurmctld >/dev/null; then
        rm -f "$SLURM_DIR/run/slurmctld.pid"
        # -c: a fresh cluster. The saved state of a cluster stopped mid-job (CI: a job that
        # slurmctld still counted as running, holding both CPUs) would block every new job.
        /usr/sbin/slurmctld -c -f "$SLURM_CONF"
        adopt "$SLURM_DIR/run/slurmctld.pid" slurmctld /usr/sbin/slurmctld ||
            fail "slurmctld did not start (log: $SLURM_DIR/log/slurmctld.log)"
        say "slurmctld started"
    fi
    until_true 30 "slurmctld answering" sh -c 'scontrol ping | grep -q UP'
    if ! ours slurmd /usr/sbin/slurmd >/dev/null; then
        rm -f "$SLURM_DIR/run/slurmd.pid"
        /usr/sbin/slurmd -f "$SLURM_CONF" -N "$(hostname -s)"
        adopt "$SLURM_DIR/run/slurmd.pid" slurmd /usr/sbin/slurmd ||
            fail "slurmd did not start (log: $SLURM_DIR/log/slurmd.log)"
        say "slurmd started"
    fi
    until_true 60 "the node idle" node_idle
}

node_idle() {
    local state
    state=$(sinfo -h -n "$(hostname -s)" -o %t 2>/dev/null | head -1)
    case "$state" in
    idle | mix | alloc | comp) return 0 ;;
    drain* | drng | down*) scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 ;;
    esac
    return 1
}

make_user() {
    id "$USER_NAME" >/dev/null 2>&1 || useradd -m -s /bin/bash "$USER_NAME"
    # useradd locks the account ('!'); sshd without PAM then refuses even keys. '*': no password.
    [ "$(getent shadow "$USER_NAME" | cut -d: -f2)" = '*' ] || usermod -p '*' "$USER_NAME"
}

start_sshd() {
    local home changed=0
    home=$(getent passwd "$USER_NAME" | cut -d: -f6)
    install -d -m 0700 "$SSHDIR"
    for kind in ed25519 rsa; do
        [ -s "$SSHDIR/host_$kind" ] || ssh-keygen -q -t "$kind" -N '' -f "$SSHDIR/host_$kind"
    done
    [ -s "$SSHDIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$USER_NAME@fractal-test" -f "$SSHDIR/id_ed25519"
    install -d -o "$USER_NAME" -g "$USER_NAME" -m 0700 "$home/.ssh"
    grep -qxF "$(cat "$SSHDIR/id_ed25519.pub")" "$home/.ssh/authorized_keys" 2>/dev/null ||
        cat "$SSHDIR/id_ed25519.pub" >>"$home/.ssh/authorized_keys"
    chown "$USER_NAME:$USER_NAME" "$home/.ssh/authorized_keys"
    chmod 0600 "$home/.ssh/authorized_keys"
    for kind in ed25519 rsa; do
        printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSHDIR/host_$kind.pub")"
    done >"$SSHDIR/known_hosts"
    cat >"$SSHDIR/sshd_config.new" <<EOF
# Written by fractal-jupyter's scripts/slurm-cluster.sh: keys only, one user, loopback only.
ListenAddress 127.0.0.1
Port ${SSH_PORT}
HostKey ${SSHDIR}/host_ed25519
HostKey ${SSHDIR}/host_rsa
PidFile ${PIDS}/sshd.pid
AllowUsers ${USER_NAME}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
MaxStartups 50:30:100
MaxSessions 64
# The sessions' SLURM commands must use the test cluster's configuration.
SetEnv SLURM_CONF=${SLURM_CONF}
# OpenSSH's first choice (sntrup761) costs ~200 ms per connection here, and paramiko lacks it.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256
Subsystem sftp internal-sftp
EOF
    if cmp -s "$SSHDIR/sshd_config.new" "$SSHDIR/sshd_config"; then
        rm -f "$SSHDIR/sshd_config.new"
    else
        mv "$SSHDIR/sshd_config.new" "$SSHDIR/sshd_config"
        changed=1
    fi
    install -d -m 0755 /run/sshd # privilege separation folder, systemd's job elsewhere
    /usr/sbin/sshd -t -f "$SSHDIR/sshd_config" || fail "invalid sshd_config"
    local pid
    if pid=$(ours sshd /usr/sbin/sshd); then
        if [ "$changed" = 1 ]; then
            say "sshd_config changed: restarting sshd"
            terminate sshd "$pid"
        else
            return 0
        fi
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$SSH_PORT") 2>/dev/null; then
        fail "127.0.0.1:$SSH_PORT is taken by a process this script did not start"
    fi
    rm -f "$PIDS/sshd.pid"
    # Absolute path: sshd re-executes itself. -E: there is no syslog here.
    /usr/sbin/sshd -f "$SSHDIR/sshd_config" -E "$STATE/sshd.log"
    until_true 5 "sshd's pid file" ours sshd /usr/sbin/sshd
    say "sshd started on 127.0.0.1:$SSH_PORT"
}

ssh_works() {
    ssh -p "$SSH_PORT" -i "$SSHDIR/id_ed25519" -o BatchMode=yes -o ConnectTimeout=5 \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$SSHDIR/known_hosts" \
        "$USER_NAME@127.0.0.1" 'squeue -h -o %i >/dev/null'
}

first_job() {
    # slurmctld reads SchedulerParameters only at its first scheduling pass (~3 s after start):
    # one tiny job now, so that the tests meet the fast scheduler from their first job on.
    local id
    id=$(runuser -u "$USER_NAME" -- sbatch --parsable -J warm-up -o /dev/null --chdir=/tmp --wrap true)
    EXPLAIN=queue_now until_true 60 "job $id completed" \
        sh -c "squeue -h -t all -j $id -o %T | grep -qx COMPLETED"
}

queue_now() {
    echo "the queue: $(squeue -h -t all -o '%i %T %r' 2>&1 | tr '\n' ';')"
}

grant_paths() {
    local target dir part
    for target in ${CLUSTER_USER_PATHS:-}; do
        target=$(readlink -f "$target") || continue
        dir=""
        IFS=/ read -ra parts <<<"${target#/}"
        for part in "${parts[@]:0:${#parts[@]}-1}"; do
            dir="$dir/$part"
            runuser -u "$USER_NAME" -- test -x "$dir" && continue
            setfacl -m "u:$USER_NAME:x" "$dir" || fail "setfacl on $dir failed"
            echo "$dir" >>"$STATE/granted"
            say "granted $USER_NAME traversal of $dir (revoked by stop)"
        done
    done
}

revoke_paths() {
    local dir
    [ -f "$STATE/granted" ] || return 0
    sort -u "$STATE/granted" | while read -r dir; do
        setfacl -x "u:$USER_NAME" "$dir" 2>/dev/null && say "revoked $USER_NAME traversal of $dir"
    done
    rm -f "$STATE/granted"
}

write_env() {
    cat >"$STATE/env" <<EOF
CI_USER=$USER_NAME
CI_SSH_HOST=127.0.0.1
CI_SSH_PORT=$SSH_PORT
CI_SSH_KEY=$SSHDIR/id_ed25519
CI_SSH_KNOWN_HOSTS=$SSHDIR/known_hosts
SLURM_CONF=$SLURM_CONF
SLURM_PARTITION=debug
SLURM_NODE=$(hostname -s)
SLURM_NODE_MEMORY_MB=$(sinfo -h -o %m | head -1)
SLURM_NODE_CPUS=$(sinfo -h -o %c | head -1)
EOF
}

start() {
    [ "$(id -u)" = 0 ] || cannot "starting munged, slurmctld, slurmd and sshd needs root"
    install_packages
    for binary in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/sshd /usr/bin/sbatch; do
        [ -x "$binary" ] || cannot "$binary is missing (packages: $PACKAGES)"
    done
    install -d -m 0755 "$STATE" "$PIDS"
    start_munge
    start_slurm
    make_user
    grant_paths
    start_sshd
    until_true 20 "ssh $USER_NAME@127.0.0.1:$SSH_PORT" ssh_works
    first_job
    write_env
    say "ready: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB' | head -1), ssh on 127.0.0.1:$SSH_PORT"
}

stop() {
    [ "$(id -u)" = 0 ] || cannot "stopping the daemons needs root"
    local pid sessions
    if pid=$(ours sshd /usr/sbin/sshd); then
        # The sessions our sshd forked (and their commands) outlive it: end them first.
        sessions=$(descendants "$pid" | tr '\n' ' ')
        # shellcheck disable=SC2086
        [ -n "${sessions// /}" ] && kill -TERM $sessions 2>/dev/null
        terminate sshd "$pid"
    fi
    if ours slurmctld /usr/sbin/slurmctld >/dev/null && ours slurmd /usr/sbin/slurmd >/dev/null; then
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break
                sleep 0.1
            done
        fi
    fi
    for name in slurmd slurmctld; do
        if pid=$(ours "$name" "/usr/sbin/$name"); then
            terminate "$name" "$pid"
            # slurmctld cannot remove its root-owned pid file.
            [ "$(tr -dc '0-9' 2>/dev/null <"$SLURM_DIR/run/$name.pid")" = "$pid" ] &&
                rm -f "$SLURM_DIR/run/$name.pid"
        fi
    done
    if pid=$(ours munged /usr/sbin/munged); then terminate munged "$pid"; fi
    revoke_paths
    rm -f "$PIDS"/*.pid
    say "stopped"
}

descendants() {
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$child"
        descendants "$child"
    done
}

status() {
    local name missing=0
    for name in munged slurmctld slurmd sshd; do
        if pid=$(ours "$name" "/usr/sbin/$name"); then echo "$name: running (pid $pid)"; else
            echo "$name: not running"
            missing=1
        fi
    done
    return "$missing"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
