# test/bench/cluster.sh: a throwaway cluster for the benchmark scripts that
# source it.  bench_cluster NAME CONF-LINES... initdb's a cluster under a
# mktemp dir (as postgres when run as root: initdb refuses root), appends
# the lines to postgresql.conf, starts it, exports PGHOST/PGPORT/PGUSER,
# and stops and removes it on exit.  bench_restart restarts it.

BINDIR=$(pg_config --bindir)

if [ "$(id -u)" = 0 ]; then
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

bench_cluster() {
    local name=$1
    shift
    WORK=$(mktemp -d "/tmp/pg_recall_$name.XXXXXX")
    chmod 755 "$WORK"
    [ "$(id -u)" = 0 ] && chown postgres: "$WORK"
    DATA=$WORK/data
    PORT=$(( 40000 + RANDOM % 20000 ))
    STARTED=0
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    as_owner "$BINDIR/initdb" -D "$DATA" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
    {
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$WORK'"
        echo "port = $PORT"
        echo "max_connections = 60"
        printf '%s\n' "$@"
    } >>"$DATA/postgresql.conf"
    bench_start
    export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres
}

bench_start() {
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$WORK/log" -w start >/dev/null \
        || { cat "$WORK/log" >&2; return 1; }
    STARTED=1
}

bench_restart() {
    as_owner "$BINDIR/pg_ctl" -D "$DATA" -w stop >/dev/null
    STARTED=0
    bench_start
}

bench_cleanup() {
    if [ "${STARTED:-0}" = 1 ]; then
        as_owner "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "${WORK:-/nonexistent}"
}
