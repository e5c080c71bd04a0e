# Shared by scripts/test and scripts/bench: a throwaway PostgreSQL from the installed server
# binaries. Source it after defining `log` and `die`, set `pg_durable=1` for a server that
# flushes every commit (the benchmark) or leave it unset for a fast test server, then call
# `start_pg`; an EXIT trap stops the server and removes its directory (and calls the script's
# `on_exit_hook`, if it defines one). `run CMD...` runs a command in a process group of its
# own, so a signal to the script ends it too.

# ---------------------------------------------------------------------------
# Throwaway PostgreSQL
# ---------------------------------------------------------------------------

pg_tmp=""        # temporary directory: data/, the socket, the server log
pg_bindir=""
pg_running=""    # set once a server is up, so the trap stops it
pg_port=""
pg_os_user=postgres   # the system user that runs the server when we are root

# The first directory that holds the server binaries we need.
find_pg_bindir() {
    local candidates=() dir
    [[ -n ${PG_BINDIR:-} ]] && candidates+=("$PG_BINDIR")
    if command -v initdb >/dev/null 2>&1; then
        candidates+=("$(dirname "$(readlink -f "$(command -v initdb)")")")
    fi
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null) && candidates+=("$dir")
    fi
    # Debian/Ubuntu, then RHEL-style layouts, newest version first.
    while IFS= read -r dir; do
        candidates+=("$dir")
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV; compgen -G '/usr/pgsql-*/bin' | sort -rV)
    for dir in "${candidates[@]}"; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

# Runs a command as the user that owns the server: $pg_os_user when we are root
# (postgres refuses to run as root), else ourselves.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        # From /, which postgres can read whatever the current directory is.
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$pg_os_user" -- "$@")
        else
            (cd / && su "$pg_os_user" -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        "$@"
    fi
}

# Is nothing listening on 127.0.0.1:$1, and can it be bound?
port_free() {
    local port=$1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        return 1
    fi
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null || return 1
    fi
    return 0
}

stop_pg() {
    [[ -n $pg_tmp ]] || return 0
    if [[ -n $pg_running ]]; then
        as_pg "$pg_bindir/pg_ctl" stop -D "$pg_tmp/data" -m immediate -w -t 30 >/dev/null 2>&1 || true
        # Belt and braces: should pg_ctl have failed, end the postmaster by its pid.
        local pid
        if [[ -f $pg_tmp/data/postmaster.pid ]] && pid=$(head -n 1 "$pg_tmp/data/postmaster.pid") \
            && [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped PostgreSQL on port $pg_port"
        pg_running=""
    fi
    rm -rf "$pg_tmp"
    pg_tmp=""
}

child=""         # process group of the running test command

on_exit() {
    local status=$?
    trap - EXIT INT TERM
    stop_pg
    # The sourcing script's own clean-up, if it defines one.
    if declare -F on_exit_hook >/dev/null; then on_exit_hook; fi
    exit "$status"
}
# On INT/TERM, end the test run (its whole process group) first, then exit,
# which stops the server.
on_signal() {
    if [[ -n $child ]]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    exit "$1"
}
trap on_exit EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Runs a command in its own process group and waits for it: unlike a foreground
# command, `wait` lets the traps above run as soon as a signal arrives. Stdin is
# /dev/null, as a background process group must not read the terminal.
run() {
    local status=0
    set -m
    "$@" </dev/null &
    child=$!
    set +m
    wait "$child" || status=$?
    child=""
    return "$status"
}

start_pg() {
    if [[ -n ${pg_durable:-} ]]; then
        # PostgreSQL's defaults: every commit reaches the disk.
        pg_durability_settings="fsync = on
synchronous_commit = on
full_page_writes = on"
    else
        # A test server: nothing here must survive a crash.
        pg_durability_settings="fsync = off
synchronous_commit = off
full_page_writes = off"
    fi
    pg_bindir=$(find_pg_bindir) || die "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install the package \`postgresql\` (e.g. apt-get install postgresql), or set DATABASE_URL"

    if [[ $(id -u) -eq 0 ]] && ! id -u "$pg_os_user" >/dev/null 2>&1; then
        log "creating the system user $pg_os_user"
        useradd --system --user-group --no-create-home --shell /bin/sh "$pg_os_user" \
            || die "cannot create the system user $pg_os_user (needed to run PostgreSQL as root)"
    fi

    # Under /tmp, not $TMPDIR: the postgres user must be able to reach it, and a
    # unix socket path must stay short.
    pg_tmp=$(mktemp -d /tmp/entities-pg.XXXXXX)
    chmod 0700 "$pg_tmp"
    if [[ $(id -u) -eq 0 ]]; then chown "$pg_os_user": "$pg_tmp"; fi

    as_pg "$pg_bindir/initdb" -D "$pg_tmp/data" --auth=trust -U postgres \
        --encoding=UTF8 --no-locale --no-sync >"$pg_tmp/initdb.log" 2>&1 \
        || { cat "$pg_tmp/initdb.log" >&2; die "initdb failed"; }

    local port attempt=0
    for ((port = 55432; port < 55532; port++)); do
        port_free "$port" || continue
        attempt=$((attempt + 1))
        ((attempt <= 10)) || break
        # postgresql.auto.conf is read after postgresql.conf, so these win.
        cat >"$pg_tmp/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pg_tmp'
$pg_durability_settings
max_connections = 300
shared_buffers = 128MB
EOF
        if [[ $(id -u) -eq 0 ]]; then chown "$pg_os_user": "$pg_tmp/data/postgresql.auto.conf"; fi
        if as_pg "$pg_bindir/pg_ctl" start -D "$pg_tmp/data" -l "$pg_tmp/server.log" -w -t 60 >/dev/null 2>&1; then
            pg_port=$port
            pg_running=1
            break
        fi
        # Another process may have taken the port meanwhile: try the next one.
        if grep -q -E 'could not (bind|create listen)|Address already in use' "$pg_tmp/server.log" 2>/dev/null; then
            : >"$pg_tmp/server.log"
            continue
        fi
        cat "$pg_tmp/server.log" >&2 2>/dev/null || true
        die "PostgreSQL did not start (log above)"
    done
    [[ -n $pg_running ]] || die "found no free port for PostgreSQL in 55432-55531"

    local isready=$pg_bindir/pg_isready i
    [[ -x $isready ]] || isready=$(command -v pg_isready || true)
    if [[ -n $isready ]]; then
        for ((i = 0; i < 60; i++)); do
            "$isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres && break
            sleep 0.5
        done
        "$isready" -q -h 127.0.0.1 -p "$pg_port" -U postgres \
            || { cat "$pg_tmp/server.log" >&2; die "PostgreSQL on port $pg_port does not answer"; }
    fi

    export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
    local version
    version=$("$pg_bindir/postgres" --version)
    log "started PostgreSQL ${version#postgres (PostgreSQL) } on 127.0.0.1:$pg_port (data in $pg_tmp, as $(as_pg id -un))"
}

