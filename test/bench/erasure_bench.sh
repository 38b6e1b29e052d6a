#!/usr/bin/env bash
# test/bench/erasure_bench.sh: what erasure costs the workload around it.
#
# Builds and installs pg_recall, starts a throwaway cluster, loads the
# messages table of test/bench/schema.sql (BENCH_ROWS rows) and enables
# recall on it (test/bench/enable.sql).  Then, alternating A B B A ...:
#   A  pgbench -M prepared -n: an insert/read mix (insert.sql, and the
#      latest 50 messages of a conversation through the view,
#      latest_view.sql) while a side loop recalls one message a second
#      (recall.sql) without purging
#   B  the same, the side loop calling recall.purge('messages') after each
#      recall (as the superuser: as the table's owner, purge fails with
#      "permission denied for table events" at this commit)
# and prints the throughput ratio B / A (target >= 0.9), what the purges
# did during B, and, measured alone afterwards (no other activity), the
# WAL the purge writes per page it scrubs: pg_current_wal_lsn() before and
# after one recall.purge() of BENCH_RECALLS recalls spread over the table,
# divided by its pages_scrubbed.
#
# Environment:
#   BENCH_SECONDS   seconds per pgbench run (default 10)
#   BENCH_ROUNDS    A/B pairs (default 2: A B B A)
#   BENCH_CLIENTS   pgbench clients (default 4)
#   BENCH_ROWS      rows in the messages table (default 200000; the purge
#                   reads every page of the table, so its cost grows with it)
#   BENCH_RECALLS   recalls purged at once for the WAL figure (default 200)
#   BENCH_FSYNC     fsync and full_page_writes of the cluster (default off,
#                   as scripts/bench.sh; the purge's full page images are
#                   written whatever full_page_writes says)
#   BENCH_OUT       also append the report to this file
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$ROOT/test/bench
SECONDS_PER=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-2}
CLIENTS=${BENCH_CLIENTS:-4}
ROWS=${BENCH_ROWS:-200000}
RECALLS=${BENCH_RECALLS:-200}
FSYNC=${BENCH_FSYNC:-off}
OUT=${BENCH_OUT:-}
CONVERSATIONS=$(( ROWS / 80 > 0 ? ROWS / 80 : 1 ))

say() { printf '%s\n' "$*" >&2; }
die() { say "erasure_bench: $*"; exit 1; }

command -v pg_config >/dev/null || die "pg_config not found (run scripts/setup.sh first)"
BINDIR=$(pg_config --bindir)
PGVERSION=$(pg_config --version)

# --- build and install -------------------------------------------------------
say "== building and installing pg_recall"
make -C "$ROOT" -s >/dev/null
if [ -w "$(pg_config --pkglibdir)" ]; then
    make -C "$ROOT" -s install >/dev/null
else
    sudo make -C "$ROOT" -s install >/dev/null
fi

# --- throwaway cluster -------------------------------------------------------
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a postgres user"
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

WORK=$(mktemp -d /tmp/pg_recall_erasure_bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
DATA=$WORK/data
PORT=$(( 55000 + RANDOM % 5000 ))
LOG=$WORK/server.log
STARTED=0
LOOP_PID=

cleanup() {
    if [ -n "$LOOP_PID" ]; then
        kill "$LOOP_PID" 2>/dev/null || true
        wait "$LOOP_PID" 2>/dev/null || true
    fi
    if [ "$STARTED" = 1 ]; then
        as_owner "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "== starting a throwaway cluster in $WORK (port $PORT, fsync=$FSYNC)"
as_owner "$BINDIR/initdb" -D "$DATA" -A trust -U postgres --no-sync -E UTF8 \
    --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF
# pg_recall erasure bench
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
max_connections = 60
shared_buffers = 1GB
synchronous_commit = on
fsync = $FSYNC
full_page_writes = $FSYNC
max_wal_size = 16GB
checkpoint_timeout = 1h
autovacuum = off
log_min_messages = warning
EOF
as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w start >/dev/null \
    || { cat "$LOG" >&2; die "the cluster did not start"; }
STARTED=1

export PGHOST=$WORK PGPORT=$PORT
PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -U postgres -At "$@"; }
qb() { "${PSQL[@]}" -U bench -d bench -At "$@"; }

# --- data --------------------------------------------------------------------
say "== loading $ROWS messages and enabling recall"
q -d postgres -c "CREATE ROLE bench LOGIN" -c "CREATE DATABASE bench OWNER bench"
q -d bench -c "CREATE EXTENSION pg_recall" -c "CREATE EXTENSION pg_prewarm"
"${PSQL[@]}" -U bench -d bench -v rows="$ROWS" -v conversations="$CONVERSATIONS" \
    -f "$BENCH_DIR/schema.sql"
"${PSQL[@]}" -U bench -d bench -f "$BENCH_DIR/enable.sql" >/dev/null
q -d bench -c "SELECT pg_prewarm(c.oid) FROM pg_class c
               WHERE c.relname IN ('messages', 'messages_pkey', 'messages_conversation_id_idx')" >/dev/null
TABLE_SIZE=$(q -d bench -c "SELECT pg_size_pretty(pg_table_size('messages'))
                            || ' (' || pg_relation_size('messages') / 8192 || ' heap pages)'")

# --- the side loop -----------------------------------------------------------
# side_loop MODE LOGFILE: once a second, recall one message (recall.sql),
# and with MODE=purge then call recall.purge('messages'); one line per
# purge in LOGFILE: milliseconds, pages scrubbed, deferred (0/1).
side_loop() {
    local mode=$1 log=$2 t0 t1 out ms
    : >"$log"
    while :; do
        t0=$(date +%s%N)
        qb -f "$BENCH_DIR/recall.sql" >/dev/null || true
        if [ "$mode" = purge ]; then
            t1=$(date +%s%N)
            if out=$(q -d bench -c "SELECT coalesce(sum(pages_scrubbed), 0),
                                   count(*) FILTER (WHERE kind = 'deferred')
                            FROM recall.purge('messages')"); then
                ms=$(( ($(date +%s%N) - t1) / 1000000 ))
                echo "$ms|$out" >>"$log"
            fi
        fi
        sleep "$(awk -v t0="$t0" -v now="$(date +%s%N)" \
                 'BEGIN { s = 1 - (now - t0) / 1e9; print (s > 0) ? s : 0 }')"
    done
}

# run MODE N: pgbench run N with the side loop in MODE; prints its tps
run() {
    local mode=$1 n=$2 out tps log
    log=$WORK/loop.$n.$mode
    side_loop "$mode" "$log" >/dev/null 2>"$log.err" &
    LOOP_PID=$!
    if ! out=$("$BINDIR/pgbench" -U bench -d bench -M prepared -n -T "$SECONDS_PER" \
                 -c "$CLIENTS" -j "$(( CLIENTS < 2 ? CLIENTS : 2 ))" \
                 -f "$BENCH_DIR/insert.sql" -f "$BENCH_DIR/latest_view.sql" 2>&1); then
        say "$out"
        die "pgbench failed"
    fi
    kill "$LOOP_PID" 2>/dev/null || true
    wait "$LOOP_PID" 2>/dev/null || true
    LOOP_PID=
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1)
    say "   run $n ($mode): $tps tps"
    echo "$tps"
}

say "== measuring: $ROUNDS x (recall loop only, recall + purge loop), $SECONDS_PER s each, $CLIENTS clients"
# a first purge scrubs what loading left behind: not part of the figures
q -d bench -c "SELECT count(*) FROM recall.purge('messages')" >/dev/null
q -d postgres -c "CHECKPOINT" >/dev/null
TPS_A=()
TPS_B=()
for (( r = 0; r < ROUNDS; r++ )); do
    if (( r % 2 == 0 )); then
        TPS_A+=("$(run recall $(( 2 * r + 1 )))")
        TPS_B+=("$(run purge $(( 2 * r + 2 )))")
    else
        TPS_B+=("$(run purge $(( 2 * r + 1 )))")
        TPS_A+=("$(run recall $(( 2 * r + 2 )))")
    fi
done

LOOP_ERRORS=$(cat "$WORK"/loop.*.err | grep -c ERROR || true)
PURGES=$(cat "$WORK"/loop.*.purge | awk -F'|' '
    { n++; ms[n] = $1; pages += $2; deferred += $3 }
    END {
        if (n == 0) { print "no purge ran"; exit }
        for (i = 2; i <= n; i++) {
            v = ms[i];
            for (j = i - 1; j >= 1 && ms[j] > v; j--) ms[j + 1] = ms[j];
            ms[j + 1] = v;
        }
        printf "%d purge calls, median %d ms, max %d ms, %d pages scrubbed, %d deferred",
               n, ms[int((n + 1) / 2)], ms[n], pages, deferred
    }')

# --- WAL per purged page, alone ----------------------------------------------
say "== WAL per purged page: $RECALLS recalls spread over the table, one purge"
qb -c "UPDATE messages SET recalled_at = now()
       WHERE id IN (SELECT (i * ($ROWS / $RECALLS))::bigint + 1
                    FROM generate_series(0, $RECALLS - 1) i)
         AND recalled_at IS NULL" >/dev/null
LSN0=$(q -d bench -c "SELECT pg_current_wal_insert_lsn()")
PURGE_OUT=$(q -d bench -c "SELECT string_agg(kind || ':' || pages_scrubbed, ' ' ORDER BY kind),
                          sum(pages_scrubbed), sum(bytes_zeroed),
                          count(*) FILTER (WHERE kind = 'deferred')
                   FROM recall.purge('messages')")
LSN1=$(q -d bench -c "SELECT pg_current_wal_insert_lsn()")
IFS='|' read -r BY_KIND PAGES ZEROED DEFERRED <<<"$PURGE_OUT"
WAL=$(q -d bench -c "SELECT pg_wal_lsn_diff('$LSN1', '$LSN0')::bigint")
if [ "${DEFERRED:-0}" != 0 ] || [ -z "$PAGES" ] || [ "$PAGES" = 0 ]; then
    WAL_LINE="the purge did not run (deferred: $DEFERRED, pages: ${PAGES:-none})"
else
    WAL_LINE=$(awk -v w="$WAL" -v p="$PAGES" -v z="$ZEROED" -v k="$BY_KIND" 'BEGIN {
        printf "%.0f bytes of WAL per scrubbed page (%d bytes for %d pages: %s; %d bytes zeroed)",
               w / p, w, p, k, z }')
fi

# --- report ------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
{
    echo "pg_recall erasure bench ($COMMIT), $PGVERSION, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$ROWS messages ($TABLE_SIZE); pgbench -M prepared -n -c $CLIENTS, insert.sql + latest_view.sql, $SECONDS_PER s per run"
    echo "side loop, once a second: a recall (recall.sql), then in B recall.purge('messages')"
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the ratio)"
    echo "cluster: shared_buffers=1GB, synchronous_commit=on, fsync=$FSYNC, full_page_writes=$FSYNC, autovacuum=off"
    awk -v a="${TPS_A[*]}" -v b="${TPS_B[*]}" 'BEGIN {
        n = split(a, A, " "); split(b, B, " ");
        for (i = 1; i <= n; i++) { sa += A[i]; sb += B[i] }
        sa /= n; sb /= n;
        for (i = 1; i <= n; i++) R[i] = (A[i] > 0) ? B[i] / A[i] : 0;
        for (i = 2; i <= n; i++) {
            v = R[i];
            for (j = i - 1; j >= 1 && R[j] > v; j--) R[j + 1] = R[j];
            R[j + 1] = v;
        }
        printf "A recall loop only:    %10.1f tps (runs: %s)\n", sa, a;
        printf "B recall + purge loop: %10.1f tps (runs: %s)\n", sb, b;
        printf "ratio B / A: %.3f of the means; per pair %.3f-%.3f (target >= 0.9: %s)\n",
               sb / sa, R[1], R[n], (sb / sa >= 0.9) ? "met" : "NOT met" }'
    echo "purges during B: $PURGES; errors in the side loops: $LOOP_ERRORS"
    echo "$WAL_LINE"
} | if [ -n "$OUT" ]; then tee -a "$OUT"; else cat; fi
