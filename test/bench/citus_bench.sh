#!/usr/bin/env bash
# test/bench/citus_bench.sh: recall throughput on a Citus distributed table,
# through the coordinator, as a ratio to a bare wiping UPDATE of the same
# distributed table shape (issue 14).
#
# Starts a coordinator and two workers on loopback (each with
# shared_preload_libraries = 'citus,pg_recall'), distributes two tables of
# BENCH_ROWS messages (shard_count 8): "bare" (no extension on it) and
# "enabled" (recall.enable), and runs with `pgbench -M prepared -n` on the
# coordinator, alternating slices of bare and enabled (A B B A ...):
#   recall        UPDATE ... SET recalled_at = now(), recalled_by = 'bench'
#                 (the actor in the statement; a single-shard statement
#                 outside a transaction block) vs the bare UPDATE that sets
#                 the recall columns and nulls the content
#   recall_tx     the transaction form: BEGIN; SET LOCAL recall.actor;
#                 UPDATE; COMMIT (pg_recall forwards the setting to the
#                 worker) vs the same transaction with the bare UPDATE
# Every transaction takes a fresh id (a sequence on the coordinator).
# Skipped (with a line saying so) when Citus is not installed for the server.
# Run by scripts/bench.sh (make bench); not part of make test.
#
# Environment: BENCH_SECONDS (default 10), BENCH_SLICE (default 2),
# BENCH_CITUS_CLIENTS (default "4"), BENCH_CITUS_ROWS (default 400000: every
# transaction takes a new row, and the figures are refused if they run out),
# BENCH_FSYNC (default off), BENCH_CITUS_DISPATCH_DELAY (recall.dispatch_delay
# of every node; default: the server's), BENCH_OUT (file the table is
# appended to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${BENCH_SECONDS:-10}
SLICE=${BENCH_SLICE:-2}
CLIENTS=${BENCH_CITUS_CLIENTS:-4}
ROWS=${BENCH_CITUS_ROWS:-400000}
FSYNC=${BENCH_FSYNC:-off}
DISPATCH_DELAY=${BENCH_CITUS_DISPATCH_DELAY:-}
OUT=${BENCH_OUT:-$ROOT/bench-results.txt}

say() { printf '%s\n' "$*" >&2; }

if [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
    say "== citus bench: skipped (Citus is not installed for $(pg_config --version))"
    echo "citus: skipped (Citus is not installed)" >>"$OUT"
    exit 0
fi

# BINDIR and as_owner (this script starts three clusters of its own)
. "$ROOT/test/bench/cluster.sh"

WORK=$(mktemp -d /tmp/pg_recall_citus.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
BASE=$(( 40000 + RANDOM % 20000 ))
PORTS=("$BASE" $((BASE + 1)) $((BASE + 2)))
STARTED=()

cleanup() {
    local p
    for p in "${STARTED[@]}"; do
        as_owner "$BINDIR/pg_ctl" -D "$WORK/n$p" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "== citus bench: a coordinator and two workers on ports ${PORTS[*]}"
for p in "${PORTS[@]}"; do
    as_owner "$BINDIR/initdb" -D "$WORK/n$p" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
    cat >>"$WORK/n$p/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
port = $p
shared_preload_libraries = 'citus,pg_recall'
max_connections = 100
max_prepared_transactions = 100
shared_buffers = 256MB
fsync = $FSYNC
full_page_writes = $FSYNC
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
log_min_messages = warning
citus.local_hostname = '127.0.0.1'
recall.purge_delay = 0
EOF
    if [ -n "$DISPATCH_DELAY" ]; then
        echo "recall.dispatch_delay = '$DISPATCH_DELAY'" >>"$WORK/n$p/postgresql.conf"
    fi
    as_owner "$BINDIR/pg_ctl" -D "$WORK/n$p" -l "$WORK/n$p.log" -w start >/dev/null \
        || { cat "$WORK/n$p.log" >&2; exit 1; }
    STARTED+=("$p")
    psql -qX -h "$WORK" -p "$p" -U postgres -d postgres -c 'CREATE EXTENSION citus' >/dev/null
done

export PGHOST=$WORK PGPORT=${PORTS[0]} PGUSER=postgres PGDATABASE=postgres
sql() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }
sql >/dev/null <<EOF
SELECT citus_set_coordinator_host('127.0.0.1', ${PORTS[0]});
SELECT citus_add_node('127.0.0.1', ${PORTS[1]});
SELECT citus_add_node('127.0.0.1', ${PORTS[2]});
CREATE EXTENSION pg_recall;
EOF

say "== citus bench: loading 2 x $ROWS messages"
for t in bare enabled; do
    sql >/dev/null <<EOF
CREATE TABLE $t (id bigint PRIMARY KEY, conversation bigint NOT NULL, sender text NOT NULL,
                 created_at timestamptz NOT NULL, body text, attachment text,
                 recalled_at timestamptz, recalled_by text, recall_reason text);
SELECT create_distributed_table('$t', 'id', shard_count => 8);
INSERT INTO $t SELECT g, g / 80, 'bench', now() - interval '1 minute',
       'message ' || g || ' ' || md5(g::text), CASE WHEN g % 10 = 0 THEN md5(g::text) END
FROM generate_series(1, $ROWS) g;
CREATE SEQUENCE ids_$t;
EOF
done
sql -c "SELECT recall.enable('enabled', '{body,attachment}', sender => 'sender',
        sent_at => 'created_at', conversation => 'conversation')" >/dev/null
sql -c "VACUUM ANALYZE bare, enabled" >/dev/null

# pgbench scripts: what each UPDATE sets, the actor in the statement or in
# the transaction (the bare UPDATE does the recall's work itself)
bare_set="recalled_at = now(), recalled_by = 'bench', body = NULL, attachment = NULL"
declare -A SET_CLAUSE=(
    [recall_bare]=$bare_set [recall_enabled]="recalled_at = now(), recalled_by = 'bench'"
    [recall_tx_bare]=$bare_set [recall_tx_enabled]="recalled_at = now()")
for t in bare enabled; do
    printf '%s\n' "SELECT nextval('ids_$t') AS id \\gset" \
        "UPDATE $t SET ${SET_CLAUSE[recall_$t]} WHERE id = :id;" >"$WORK/recall_$t.sql"
    printf '%s\n' "SELECT nextval('ids_$t') AS id \\gset" "BEGIN;" \
        "SET LOCAL recall.actor = 'bench';" \
        "UPDATE $t SET ${SET_CLAUSE[recall_tx_$t]} WHERE id = :id;" "COMMIT;" >"$WORK/recall_tx_$t.sql"
done

NSLICES=$(( (SECS + SLICE - 1) / SLICE ))
(( NSLICES >= 1 )) || NSLICES=1
SLICE_LEN=$(( (SECS + NSLICES - 1) / NSLICES ))

# Transactions of one pgbench run of a script for $2 seconds at $3 clients.
run_slice() {
    pgbench -n -M prepared -f "$1" -T "$2" -c "$3" -j "$3" 2>/dev/null |
        awk '/^number of transactions actually processed/ { split($0, a, ": "); split(a[2], b, "/"); print b[1] }'
}

RESULTS=()
for w in recall recall_tx; do
    for c in $CLIENTS; do
        tb=0; te=0
        for ((s = 0; s < NSLICES; s++)); do
            if (( s % 2 == 0 )); then order="bare enabled"; else order="enabled bare"; fi
            for t in $order; do
                n=$(run_slice "$WORK/${w}_$t.sql" "$SLICE_LEN" "$c")
                if [ "$t" = bare ]; then tb=$((tb + n)); else te=$((te + n)); fi
            done
        done
        secs=$((NSLICES * SLICE_LEN))
        RESULTS+=("$(awk -v w="$w" -v c="$c" -v b="$tb" -v e="$te" -v s="$secs" \
            'BEGIN { printf "%-10s %7d %12.1f %12.1f %8.2f", w, c, b / s, e / s, (b > 0 ? e / b : 0) }')")
    done
done

# the recalls were real: wiped, logged on the workers under the table's name
CHECK=$(sql -c "SELECT count(*) FILTER (WHERE body IS NOT NULL OR recalled_by <> 'bench')
                FROM enabled WHERE recalled_at IS NOT NULL")
EVENTS=$(sql -c "SELECT sum(result::bigint) FROM run_command_on_workers(
                 \$\$SELECT count(*) FROM recall.events WHERE tbl = 'enabled'::regclass\$\$)")
RECALLED=$(sql -c "SELECT count(*) FROM enabled WHERE recalled_at IS NOT NULL")
USED=$(sql -c "SELECT greatest((SELECT last_value FROM ids_bare), (SELECT last_value FROM ids_enabled))")
if (( USED > ROWS )); then
    RESULTS=("ran out of rows ($USED ids taken, $ROWS rows): raise BENCH_CITUS_ROWS; no figures")
fi

{
    echo
    echo "Citus (issue 14): recall through the coordinator vs a bare wiping UPDATE"
    echo "($(pg_config --version), $(psql -qXAt -c "SELECT extversion FROM pg_extension WHERE extname = 'citus'" | sed 's/^/Citus /'),"
    echo " a coordinator and 2 workers on loopback, $ROWS rows, shard_count 8, ${SECS}s per point, fsync=$FSYNC,"
    echo " recall.dispatch_delay ${DISPATCH_DELAY:-default})"
    printf '%-10s %7s %12s %12s %8s\n' workload clients "bare tps" "recall tps" ratio
    printf '%s\n' "${RESULTS[@]}"
    echo "recalled: $RECALLED rows, $EVENTS worker events, $CHECK rows not wiped or with another actor"
} | tee -a "$OUT"
