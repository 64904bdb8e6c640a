#!/usr/bin/env bash
# Real services for vaebench's test-suite and CI, on a single Debian/Ubuntu machine:
#   - SLURM (slurmctld + slurmd on "localhost", accounting through slurmdbd + MariaDB, munge auth)
#   - PostgreSQL with role/database vaebench/vaebench (password vaebench) on localhost:5432
#   - pdflatex with booktabs (texlive-latex-base + texlive-latex-recommended)
#   - Chromium and its WebDriver (chromium + chromium-driver) for the report's browser test
#
# Usage (as root; no systemd needed):
#   bash .ci/services.sh                   # install what is missing, start everything
#   bash .ci/services.sh slurm postgres    # only some components (slurm | postgres | latex | chromium)
#   bash .ci/services.sh --stop            # stop the daemons by the pids in their pid files
#
# Idempotent: packages are installed only when missing, config files are rewritten only when
# their content changes, daemons are started only when not already running. A second run on a
# machine where everything is up takes about a second.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
SLURM_ETC=/etc/slurm
SLURM_LOG_DIR=/var/log/slurm
SLURMCTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
SLURMDBD_PID=/run/slurmdbd.pid
MUNGE_PID=/run/munge/munged.pid
MARIADB_PID=/run/mysqld/mysqld.pid
SLURM_DB=slurm_acct_db
SLURM_DB_USER=slurm
SLURM_DB_PASS=slurmdbpass
PG_USER=vaebench
PG_PASS=vaebench
PG_DB=vaebench
PG_PORT=5432
PG_FALLBACK_DIR=/tmp/vaebench-pgdata      # used only if the packaged cluster cannot start
PG_FALLBACK_LOG=/tmp/vaebench-pg.log

log() { printf '[services] %s\n' "$*"; }
die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    exit 1
}
# show the tail of a log file on stderr (used before die)
tail_log() {
    if [[ -r "$1" ]]; then
        printf '[services] --- last lines of %s ---\n' "$1" >&2
        tail -n "${2:-20}" "$1" >&2 || true
    fi
}
# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds
wait_for() {
    local limit=$1
    shift
    local end=$((SECONDS + limit))
    while ((SECONDS < end)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    "$@" >/dev/null 2>&1
}
pid_alive() { # pid_alive PIDFILE
    [[ -s "$1" ]] || return 1
    local pid
    pid=$(head -n1 "$1" | tr -dc '0-9')
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}
stop_pidfile() { # stop_pidfile NAME PIDFILE [SIGNAL]
    local name=$1 file=$2 sig=${3:-TERM} pid
    if ! pid_alive "$file"; then
        log "$name: not running"
        return 0
    fi
    pid=$(head -n1 "$file" | tr -dc '0-9')
    kill "-$sig" "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: pid $pid still alive after 10 s, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name: stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
STOP=0
COMPONENTS=()
for arg in "$@"; do
    case "$arg" in
    --stop) STOP=1 ;;
    slurm | postgres | latex | chromium) COMPONENTS+=("$arg") ;;
    -h | --help)
        sed -n '2,15p' "$0"
        exit 0
        ;;
    *) die "unknown argument '$arg' (expected --stop, slurm, postgres, latex, chromium)" ;;
    esac
done
((${#COMPONENTS[@]})) || COMPONENTS=(slurm postgres latex chromium)
want() { [[ " ${COMPONENTS[*]} " == *" $1 "* ]]; }

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons); try: sudo bash $0"

# ---------------------------------------------------------------------------------------------
# --stop
# ---------------------------------------------------------------------------------------------
pg_version() { # newest installed PostgreSQL server version (e.g. 15), empty if none
    ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n1
}
if ((STOP)); then
    if want slurm; then
        stop_pidfile slurmd "$SLURMD_PID"
        stop_pidfile slurmctld "$SLURMCTLD_PID"
        stop_pidfile slurmdbd "$SLURMDBD_PID"
        stop_pidfile mariadb "$MARIADB_PID"
        stop_pidfile munged "$MUNGE_PID"
    fi
    if want postgres; then
        v=$(pg_version)
        # SIGINT = PostgreSQL's "fast" shutdown (SIGTERM waits for clients to disconnect)
        [[ -n "$v" ]] && stop_pidfile "postgresql $v/main" "/var/run/postgresql/$v-main.pid" INT
        [[ -e "$PG_FALLBACK_DIR/postmaster.pid" ]] &&
            stop_pidfile "postgresql (fallback)" "$PG_FALLBACK_DIR/postmaster.pid" INT
    fi
    exit 0
fi

T0=$SECONDS

# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------
is_installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == *'install ok installed'* ]]; }
PKGS=()
if want slurm; then PKGS+=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server); fi
if want postgres; then
    if [[ -z "$(pg_version)" ]]; then PKGS+=(postgresql); fi
fi
if want latex; then PKGS+=(texlive-latex-base texlive-latex-recommended); fi
if want chromium; then PKGS+=(chromium chromium-driver); fi
MISSING=()
for p in "${PKGS[@]}"; do is_installed "$p" || MISSING+=("$p"); done

APT_UPDATED=0
apt_update() {
    log "apt-get update"
    apt-get -o DPkg::Lock::Timeout=300 update -qq >/tmp/vaebench-apt-update.log 2>&1 ||
        {
            tail_log /tmp/vaebench-apt-update.log
            die "apt-get update failed"
        }
    APT_UPDATED=1
}
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        --no-install-recommends "$@" >/tmp/vaebench-apt-install.log 2>&1
}
if ((${#MISSING[@]})); then
    # "update once if needed": when the package lists are missing or older than 6 hours
    newest_list=$(find /var/lib/apt/lists -maxdepth 1 -type f -name '*Packages*' -mmin -360 2>/dev/null || true)
    [[ -n "$newest_list" ]] || apt_update
    log "installing: ${MISSING[*]}"
    t=$SECONDS
    if ! apt_install "${MISSING[@]}"; then
        if ((!APT_UPDATED)); then
            log "install failed with the current package lists; updating them and retrying"
            apt_update
            apt_install "${MISSING[@]}" || {
                tail_log /tmp/vaebench-apt-install.log
                die "apt-get install ${MISSING[*]} failed"
            }
        else
            tail_log /tmp/vaebench-apt-install.log
            die "apt-get install ${MISSING[*]} failed"
        fi
    fi
    log "installed in $((SECONDS - t)) s"
else
    log "packages: all present"
fi

# write_if_changed PATH MODE: write stdin to PATH when different; returns 0 if it changed
write_if_changed() {
    local path=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f "$path" ]] && cmp -s "$tmp" "$path"; then
        rm -f "$tmp"
        chmod "$mode" "$path"
        return 1
    fi
    install -m "$mode" -o root -g root "$tmp" "$path"
    rm -f "$tmp"
    return 0
}

# ---------------------------------------------------------------------------------------------
# SLURM: munge, mariadb, slurmdbd, slurmctld, slurmd
# ---------------------------------------------------------------------------------------------
start_slurm() {
    local b
    for b in munged slurmctld slurmd slurmdbd sinfo scontrol sacct sacctmgr mysqld; do
        command -v "$b" >/dev/null 2>&1 || [[ -x "/usr/sbin/$b" ]] || die "binary '$b' not found after installing the packages"
    done
    mkdir -p "$SLURM_ETC" "$SLURM_LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld

    # --- munge ---
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "munge: creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile=/etc/munge/munge.key --force
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
        fi
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
    fi
    if pid_alive "$MUNGE_PID" && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munge: already running"
    else
        log "munge: starting"
        chown munge:munge /run/munge 2>/dev/null || true
        /etc/init.d/munge start >/tmp/vaebench-munge-start.log 2>&1 || true
        wait_for 10 bash -c 'munge -n | unmunge' || {
            tail_log /tmp/vaebench-munge-start.log
            tail_log /var/log/munge/munged.log
            die "munge did not start ('munge -n | unmunge' fails)"
        }
    fi

    # --- mariadb + accounting database ---
    if pid_alive "$MARIADB_PID" && mysqladmin ping >/dev/null 2>&1; then
        log "mariadb: already running"
    else
        log "mariadb: starting"
        chown mysql:mysql /run/mysqld 2>/dev/null || true
        /etc/init.d/mariadb start >/tmp/vaebench-mariadb-start.log 2>&1 || true
        wait_for 30 mysqladmin ping || {
            tail_log /tmp/vaebench-mariadb-start.log
            tail_log /var/log/mysql/error.log
            die "mariadb did not start ('mysqladmin ping' fails)"
        }
    fi
    mysql -u root <<SQL || die "could not create the accounting database in mariadb"
CREATE DATABASE IF NOT EXISTS ${SLURM_DB};
CREATE USER IF NOT EXISTS '${SLURM_DB_USER}'@'localhost' IDENTIFIED BY '${SLURM_DB_PASS}';
ALTER USER '${SLURM_DB_USER}'@'localhost' IDENTIFIED BY '${SLURM_DB_PASS}';
GRANT ALL PRIVILEGES ON ${SLURM_DB}.* TO '${SLURM_DB_USER}'@'localhost';
FLUSH PRIVILEGES;
SQL

    # --- configuration ---
    local cpus mem_mb slurmd_mem changed=0
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
    slurmd_mem=$(slurmd -C 2>/dev/null | tr ' ' '\n' | sed -n 's/^RealMemory=//p' || true)
    slurmd_mem=${slurmd_mem%%$'\n'*}
    if [[ -n "$slurmd_mem" ]] && ((slurmd_mem < mem_mb)); then mem_mb=$slurmd_mem; fi
    ((mem_mb > 0)) || die "could not compute RealMemory (MemTotal=$(grep MemTotal /proc/meminfo))"

    if write_if_changed "$SLURM_ETC/slurm.conf" 644 <<CONF; then
# Written by vaebench/.ci/services.sh: a single-node cluster for tests and CI.
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$SLURM_LOG_DIR/slurmctld.log
SlurmdLogFile=$SLURM_LOG_DIR/slurmd.log
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
# scheduling: CR_Core so that several 1-cpu jobs / array tasks share the node at once
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# jobs may be requeued (submitit calls 'scontrol requeue' after a checkpoint)
JobRequeue=1
# keep finished jobs in slurmctld's memory for a minute (sacct has them afterwards)
MinJobAge=60
KillWait=10
InactiveLimit=0
Waittime=0
# accounting (sacct), needed by submitit to learn that a job died without a result
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
        changed=1
        log "slurm: wrote $SLURM_ETC/slurm.conf (CPUs=$cpus RealMemory=$mem_mb)"
    fi
    if write_if_changed "$SLURM_ETC/slurmdbd.conf" 600 <<CONF; then
# Written by vaebench/.ci/services.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$SLURM_DB_USER
StoragePass=$SLURM_DB_PASS
StorageLoc=$SLURM_DB
PidFile=$SLURMDBD_PID
LogFile=$SLURM_LOG_DIR/slurmdbd.log
CONF
        changed=1
        log "slurm: wrote $SLURM_ETC/slurmdbd.conf"
    fi
    if ((changed)); then
        # a running daemon would keep the old configuration: restart what runs
        stop_pidfile slurmd "$SLURMD_PID" >/dev/null
        stop_pidfile slurmctld "$SLURMCTLD_PID" >/dev/null
        stop_pidfile slurmdbd "$SLURMDBD_PID" >/dev/null
    fi

    # --- slurmdbd ---
    if pid_alive "$SLURMDBD_PID" && ! wait_for 5 bash -c "exec 3<>/dev/tcp/localhost/6819"; then
        log "slurmdbd: running but not listening on localhost:6819, restarting it"
        stop_pidfile slurmdbd "$SLURMDBD_PID" >/dev/null
    fi
    if pid_alive "$SLURMDBD_PID"; then
        log "slurmdbd: already running"
    else
        log "slurmdbd: starting"
        slurmdbd >>"$SLURM_LOG_DIR/slurmdbd-start.log" 2>&1 || {
            tail_log "$SLURM_LOG_DIR/slurmdbd-start.log"
            tail_log "$SLURM_LOG_DIR/slurmdbd.log"
            die "slurmdbd failed to start"
        }
        wait_for 20 bash -c "exec 3<>/dev/tcp/localhost/6819" || {
            tail_log "$SLURM_LOG_DIR/slurmdbd.log"
            stop_pidfile slurmdbd "$SLURMDBD_PID" >/dev/null
            die "slurmdbd does not listen on localhost:6819 (stopped it again)"
        }
    fi

    # --- slurmctld ---
    if pid_alive "$SLURMCTLD_PID" && scontrol ping 2>/dev/null | grep -q 'is UP'; then
        log "slurmctld: already running"
    else
        log "slurmctld: starting"
        slurmctld >>"$SLURM_LOG_DIR/slurmctld-start.log" 2>&1 || {
            tail_log "$SLURM_LOG_DIR/slurmctld-start.log"
            tail_log "$SLURM_LOG_DIR/slurmctld.log"
            die "slurmctld failed to start"
        }
        wait_for 30 bash -c "scontrol ping | grep -q 'is UP'" || {
            tail_log "$SLURM_LOG_DIR/slurmctld.log"
            stop_pidfile slurmctld "$SLURMCTLD_PID" >/dev/null
            die "slurmctld does not answer 'scontrol ping' (stopped it again)"
        }
    fi

    # --- slurmd ---
    if pid_alive "$SLURMD_PID"; then
        log "slurmd: already running"
    else
        log "slurmd: starting"
        slurmd -N localhost >>"$SLURM_LOG_DIR/slurmd-start.log" 2>&1 || {
            tail_log "$SLURM_LOG_DIR/slurmd-start.log"
            tail_log "$SLURM_LOG_DIR/slurmd.log"
            die "slurmd failed to start"
        }
    fi
    node_ready() { sinfo -h -N -n localhost -o '%t' | grep -qE '^(idle|mix|alloc|comp)'; }
    if ! wait_for 30 node_ready; then
        # a node left DOWN/DRAIN by an earlier crash: bring it back once
        scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        wait_for 10 node_ready || {
            tail_log "$SLURM_LOG_DIR/slurmd.log"
            tail_log "$SLURM_LOG_DIR/slurmctld.log"
            die "node localhost is not idle: $(sinfo -h -N -o '%N %t %E' 2>&1)"
        }
    fi
    sacct -n -X -S now-1minute >/dev/null 2>&1 || {
        tail_log "$SLURM_LOG_DIR/slurmdbd.log"
        die "sacct does not answer (accounting through slurmdbd is broken)"
    }
    log "slurm: ready ($(sinfo -h -N -o '%N %t cpus=%c mem=%m'))"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
pg_ready() { pg_isready -q -h localhost -p "$PG_PORT"; }
# psql as the postgres superuser, over the unix socket of whichever cluster runs
pg_super() {
    local host=/var/run/postgresql
    [[ -e "$PG_FALLBACK_DIR/postmaster.pid" ]] && pid_alive "$PG_FALLBACK_DIR/postmaster.pid" && host=$PG_FALLBACK_DIR
    (cd / && runuser -u postgres -- psql -h "$host" -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA "$@")
}
start_postgres() {
    local v bin
    v=$(pg_version)
    [[ -n "$v" ]] || die "no PostgreSQL server under /usr/lib/postgresql after installing 'postgresql'"
    bin=/usr/lib/postgresql/$v/bin
    if pg_ready; then
        log "postgresql: already running on localhost:$PG_PORT"
    else
        log "postgresql: starting cluster $v/main"
        local clusters
        clusters=$(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' || true)
        if ! grep -qx "$v/main" <<<"$clusters"; then
            pg_createcluster "$v" main >/tmp/vaebench-pg-create.log 2>&1 || true
        fi
        if pg_ctlcluster "$v" main start >/tmp/vaebench-pg-start.log 2>&1 && wait_for 20 pg_ready; then
            :
        else
            log "postgresql: cluster $v/main did not start ($(tail -n1 /tmp/vaebench-pg-start.log)); using initdb in $PG_FALLBACK_DIR"
            if [[ ! -s "$PG_FALLBACK_DIR/PG_VERSION" ]]; then
                rm -rf "$PG_FALLBACK_DIR"
                install -d -o postgres -g postgres -m 700 "$PG_FALLBACK_DIR"
                (cd / && runuser -u postgres -- "$bin/initdb" -D "$PG_FALLBACK_DIR" -U postgres \
                    --auth-local=trust --auth-host=scram-sha-256) >/tmp/vaebench-pg-initdb.log 2>&1 || {
                    tail_log /tmp/vaebench-pg-initdb.log
                    die "initdb failed"
                }
            fi
            (cd / && runuser -u postgres -- "$bin/pg_ctl" -D "$PG_FALLBACK_DIR" -l "$PG_FALLBACK_LOG" -w -t 30 \
                -o "-p $PG_PORT -k $PG_FALLBACK_DIR -c listen_addresses=localhost" start) >/dev/null 2>&1 || true
            wait_for 20 pg_ready || {
                tail_log /tmp/vaebench-pg-start.log
                tail_log "$PG_FALLBACK_LOG"
                die "PostgreSQL does not answer pg_isready on localhost:$PG_PORT"
            }
        fi
    fi
    if [[ "$(pg_super -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" != 1 ]]; then
        pg_super -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASS'" || die "could not create role $PG_USER"
    fi
    if [[ "$(pg_super -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" != 1 ]]; then
        pg_super -c "CREATE DATABASE $PG_DB OWNER $PG_USER" || die "could not create database $PG_DB"
    fi
    PGPASSWORD=$PG_PASS psql -h localhost -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qtAc 'SELECT 1' >/dev/null 2>&1 ||
        die "cannot log in as $PG_USER with its password on localhost:$PG_PORT (check pg_hba.conf)"
    log "postgresql: ready (postgresql://$PG_USER:***@localhost:$PG_PORT/$PG_DB)"
}

check_latex() {
    command -v pdflatex >/dev/null 2>&1 || die "pdflatex not found after installing texlive-latex-base"
    kpsewhich booktabs.sty >/dev/null 2>&1 || die "booktabs.sty not found (texlive-latex-recommended missing?)"
    log "latex: ready ($(command -v pdflatex))"
}

want slurm && start_slurm
want postgres && start_postgres
want latex && check_latex
# chromium: no daemon; the test starts it headless with its own profile (tests/services.py)
if want chromium; then
    chromium --version >/dev/null 2>&1 || die "chromium does not run after installing it: $(chromium --version 2>&1 | tail -n1)"
    chromedriver --version >/dev/null 2>&1 || die "chromedriver does not run after installing chromium-driver"
    log "chromium: ready ($(chromium --version 2>/dev/null))"
fi
log "done in $((SECONDS - T0)) s"
