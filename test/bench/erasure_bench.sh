#!/usr/bin/env bash
# test/bench/erasure_bench.sh: what erasure costs, and that it costs per
# recall, not per table.
#
# Builds and installs pg_recall, starts a throwaway cluster (pg_recall
# preloaded, autovacuum off), and for each table size of BENCH_SIZES loads
# the messages table of test/bench/schema.sql, adds a GIN full-text index on
# its content (what chat servers search with), enables recall on it
# (test/bench/enable.sql), then measures:
#   1. purge time, WAL and pages read per recalled message: BENCH_RECALLS
#      recalls (each count in turn) spread over the table, in one
#      transaction, then a CHECKPOINT and one recall.purge('messages'),
#      alone on the cluster; BENCH_REPEAT times, median.  The figures must
#      stay flat from the smallest size to the largest (target: within
#      1.2x);
#   2. the longest wait of a writer (pgbench, one client, BENCH_RATE
#      inserts a second, each transaction's latency logged) during heap
#      purges: rounds of 100 recalls and a recall.purge() while it writes
#      (target: <= 50 ms);
#   3. its longest wait during the rebuilder's REINDEX CONCURRENTLY of the
#      dirty content index (recall.index_rebuild_interval set to 0), from
#      the moment the rebuild starts to the moment it is recorded (target:
#      <= 200 ms);
#   4. application throughput (pgbench -M prepared, BENCH_CLIENTS clients,
#      insert.sql and latest_view.sql) with a side loop recalling one
#      message a second, in three modes, BENCH_ROUNDS rounds in rotating
#      order: A no erasure (recall.purge_delay = 0), B1 the purger
#      (purge_delay 1s), B2 the purger and the rebuilder rebuilding the GIN
#      index without pause (index_rebuild_interval 0); B1 / A and B2 / A
#      (target: >= 0.9).
# Recalls record their residue themselves (the guard trigger, in the
# recall's transaction: its cost is the recall's, not the purge's).
#
# Environment:
#   BENCH_SIZES     table sizes, rows (default "1000000 10000000")
#   BENCH_RECALLS   recalls per purge for figure 1 (default "1 100")
#   BENCH_REPEAT    purges measured per point (default 5)
#   BENCH_RATE      the writer's inserts per second (default 50)
#   BENCH_SECONDS   seconds per throughput run (default 20)
#   BENCH_ROUNDS    rounds of A, B1, B2 (default 2)
#   BENCH_CLIENTS   pgbench clients of the throughput runs (default 4)
#   BENCH_FSYNC     fsync of the cluster (default off; full_page_writes
#                   stays on, as the WAL figure must count what a
#                   production cluster writes)
#   BENCH_OUT       also append the report to this file
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$ROOT/test/bench
SIZES=${BENCH_SIZES:-"1000000 10000000"}
RECALL_COUNTS=${BENCH_RECALLS:-"1 100"}
REPEAT=${BENCH_REPEAT:-5}
RATE=${BENCH_RATE:-50}
SECONDS_PER=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-2}
CLIENTS=${BENCH_CLIENTS:-4}
FSYNC=${BENCH_FSYNC:-off}
OUT=${BENCH_OUT:-}
CONVERSATIONS=12500

say() { printf '%s\n' "$*" >&2; }
die() { say "erasure_bench: $*"; exit 1; }
now() { date +%s.%N; }

command -v pg_config >/dev/null || die "pg_config not found (run scripts/setup.sh first)"
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
# shellcheck source=cluster.sh
source "$BENCH_DIR/cluster.sh"
WRITER_PID=
LOOP_PID=
stop_background() {
    local p
    for p in $WRITER_PID $LOOP_PID; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    WRITER_PID= LOOP_PID=
}
say "== starting a throwaway cluster (fsync=$FSYNC)"
bench_cluster erasure_bench \
    "shared_preload_libraries = 'pg_recall'" \
    "shared_buffers = 1GB" "maintenance_work_mem = 256MB" \
    "synchronous_commit = on" "fsync = $FSYNC" "full_page_writes = on" \
    "max_wal_size = 16GB" "checkpoint_timeout = 1h" "autovacuum = off" \
    "log_min_messages = warning" \
    "recall.purge_delay = 0" "recall.index_rebuild_interval = -1" "recall.sweep_interval = -1"
trap 'stop_background; bench_cleanup' EXIT

PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -U postgres -At "$@"; }
setting() {
    q -d postgres -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1.5    # the workers take the reload on their next pass
}
q -d postgres -c "CREATE ROLE bench LOGIN"

# recall_ids DB IDS...: recall these messages in one transaction as their
# sender (the recall records its residue itself)
recall_ids() {
    local db=$1 ids
    shift
    ids=$(IFS=,; echo "$*")
    q -d "$db" >/dev/null <<EOF
BEGIN;
SET LOCAL recall.actor = 'bench';
UPDATE messages SET recalled_at = now() WHERE id IN ($ids) AND recalled_at IS NULL;
COMMIT;
EOF
}

# spread ROWS N SALT: N ids spread evenly over the table, shifted by SALT
spread() {
    awk -v rows="$1" -v n="$2" -v salt="$3" 'BEGIN {
        step = int(rows / n);
        for (i = 0; i < n; i++) printf "%d ", 1 + i * step + (salt % step) }'
}

# writer_start DB TAG: the writer, in 10-second pgbench runs (each logging
# every transaction) until writer_stop
writer_start() {
    local db=$1 tag=$2
    rm -f "$WORK/stop.$tag"
    (
        i=0
        while [ ! -e "$WORK/stop.$tag" ]; do
            "$BINDIR/pgbench" -U bench -d "$db" -n -c 1 -R "$RATE" -T 10 \
                -f "$BENCH_DIR/insert.sql" -l --log-prefix="$WORK/writer.$tag.$i" \
                >/dev/null 2>>"$WORK/writer.$tag.err" || true
            i=$((i + 1))
        done
    ) &
    WRITER_PID=$!
    sleep 2
}
writer_stop() {
    touch "$WORK/stop.$1"
    wait "$WRITER_PID" 2>/dev/null || true
    WRITER_PID=
}

# longest_wait TAG WINDOWS_FILE: the longest latency (ms) of the writer's
# transactions that overlapped one of the windows ("from to" per line)
longest_wait() {
    cat "$WORK"/writer."$1".*.* 2>/dev/null | awk -v wf="$2" '
        BEGIN { while ((getline line < wf) > 0) { split(line, w, " "); n++; f[n] = w[1]; t[n] = w[2] } }
        NF >= 6 {
            end = $5 + $6 / 1e6; lat = $3 / 1e6;
            for (i = 1; i <= n; i++)
                if (end >= f[i] && end - lat <= t[i] && lat > max) max = lat
        }
        END { if (n == 0) print "none"; else printf "%.1f", max * 1000 }'
}

REPORT=()
report() { REPORT+=("$*"); say "   $*"; }
declare -A PER_MSG_MS PER_MSG_WAL

for ROWS in $SIZES; do
    DB=bench_$ROWS
    say "== $ROWS messages: loading"
    q -d postgres -c "CREATE DATABASE $DB OWNER bench"
    q -d "$DB" -c "CREATE EXTENSION pg_recall" >/dev/null
    "${PSQL[@]}" -U bench -d "$DB" -v rows="$ROWS" -v conversations="$CONVERSATIONS" \
        -f "$BENCH_DIR/schema.sql" >/dev/null
    "${PSQL[@]}" -U bench -d "$DB" \
        -c "CREATE INDEX messages_body_fts ON messages USING gin (to_tsvector('simple', coalesce(body, '')))" \
        -f "$BENCH_DIR/enable.sql" >/dev/null
    q -d "$DB" -c "CHECKPOINT"
    SIZE=$(q -d "$DB" -c "SELECT pg_size_pretty(pg_relation_size('messages')) || ' heap ('
                          || pg_relation_size('messages') / 8192 || ' pages), GIN index '
                          || pg_size_pretty(pg_relation_size('messages_body_fts'))")
    report "size $ROWS rows: $SIZE"

    # 1. purge time, WAL, pages per recalled message
    for N in $RECALL_COUNTS; do
        : >"$WORK/purge.$ROWS.$N"
        for (( r = 1; r <= REPEAT; r++ )); do
            # shellcheck disable=SC2046
            recall_ids "$DB" $(spread "$ROWS" "$N" $(( r * 37 + N )))
            q -d "$DB" -c "CHECKPOINT"
            # timed in the server: no client start-up in the figure
            q -d "$DB" -F ' ' >>"$WORK/purge.$ROWS.$N" <<'EOF'
SELECT pg_current_wal_insert_lsn() AS l0, clock_timestamp() AS t0 \gset
SELECT coalesce(sum(pages_scanned), 0) AS pages, count(*) FILTER (WHERE kind = 'deferred') AS deferred
FROM recall.purge('messages') \gset
SELECT extract(epoch FROM :'t0'::timestamptz), extract(epoch FROM clock_timestamp()),
       pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l0')::bigint, :pages, :deferred;
EOF
        done
        LINE=$(awk -v n="$N" '
            function median(a, k,   i, j, v) {
                for (i = 2; i <= k; i++) { v = a[i]; for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]; a[j + 1] = v }
                return a[int((k + 1) / 2)]
            }
            { ms[NR] = ($2 - $1) * 1000; wal[NR] = $3; pages[NR] = $4; deferred += $5 }
            END {
                m = median(ms, NR); w = median(wal, NR); p = median(pages, NR);
                printf "%.3f %.0f %.1f %d %.1f %.0f", m / n, w / n, p / n, deferred, m, w }' \
            "$WORK/purge.$ROWS.$N")
        read -r MS_PER WAL_PER PAGES_PER DEFERRED MS_ALL WAL_ALL <<<"$LINE"
        PER_MSG_MS[$ROWS.$N]=$MS_PER
        PER_MSG_WAL[$ROWS.$N]=$WAL_PER
        report "  purge of $N recall(s): median $MS_ALL ms and $WAL_ALL bytes of WAL in all;" \
               "per message $MS_PER ms, $WAL_PER bytes of WAL, $PAGES_PER pages read" \
               "($REPEAT runs, $DEFERRED deferred)"
    done

    # 2. the writer during heap purges
    say "== $ROWS messages: a writer during heap purges"
    writer_start "$DB" "purge$ROWS"
    : >"$WORK/windows.purge$ROWS"
    for (( r = 1; r <= 10; r++ )); do
        # shellcheck disable=SC2046
        recall_ids "$DB" $(spread "$ROWS" 100 $(( 1000 + r * 53 )))
        sleep 0.3
        q -d "$DB" -F ' ' >>"$WORK/windows.purge$ROWS" <<'EOF'
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) FROM recall.purge('messages') \gset
SELECT extract(epoch FROM :'t0'::timestamptz), extract(epoch FROM clock_timestamp());
EOF
        sleep 0.5
    done
    writer_stop "purge$ROWS"
    report "  writer at $RATE inserts/s: longest wait during 10 heap purges of 100 recalls:" \
           "$(longest_wait "purge$ROWS" "$WORK/windows.purge$ROWS") ms (target <= 50)"

    # 3. the writer during REINDEX CONCURRENTLY of the dirty GIN index
    say "== $ROWS messages: a writer during REINDEX CONCURRENTLY"
    writer_start "$DB" "reindex$ROWS"
    setting recall.index_rebuild_interval 0
    T0=
    for (( i = 0; i < 36000; i++ )); do
        STATE=$(q -d "$DB" -c "SELECT count(*) FILTER (WHERE dirty_since IS NOT NULL),
                                      extract(epoch FROM min(last_rebuild) FILTER (WHERE dirty_since IS NULL))
                               FROM recall.index_state")
        IFS='|' read -r DIRTY STARTED <<<"$STATE"
        if [ "$DIRTY" = 0 ] && [ -n "$STARTED" ]; then T0=$STARTED; break; fi
        sleep 0.1
    done
    T1=$(now)
    setting recall.index_rebuild_interval -1
    writer_stop "reindex$ROWS"
    if [ -n "$T0" ]; then
        echo "$T0 $T1" >"$WORK/windows.reindex$ROWS"
        report "  writer at $RATE inserts/s: longest wait during REINDEX CONCURRENTLY of the GIN index" \
               "($(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f", b - a }') s):" \
               "$(longest_wait "reindex$ROWS" "$WORK/windows.reindex$ROWS") ms (target <= 200)"
    else
        report "  the rebuild did not finish"
    fi

    # 4. throughput beside the workers
    say "== $ROWS messages: throughput, ${SECONDS_PER}s per run"
    side_loop() {
        local id
        while :; do
            id=$(q -d "$DB" -c "SELECT nextval('bench_ids')")
            recall_ids "$DB" "$id" || true
            sleep 1
        done
    }
    run_mode() {
        local mode=$1 out
        case $mode in
            A)  setting recall.purge_delay 0 ;;
            B1) setting recall.purge_delay 1s ;;
            B2) setting recall.purge_delay 1s; setting recall.index_rebuild_interval 0 ;;
        esac
        side_loop >/dev/null 2>&1 &
        LOOP_PID=$!
        out=$("$BINDIR/pgbench" -U bench -d "$DB" -M prepared -n -T "$SECONDS_PER" \
                -c "$CLIENTS" -j "$(( CLIENTS < 2 ? CLIENTS : 2 ))" \
                -f "$BENCH_DIR/insert.sql" -f "$BENCH_DIR/latest_view.sql" 2>&1) \
            || { say "$out"; die "pgbench failed"; }
        kill "$LOOP_PID" 2>/dev/null || true
        wait "$LOOP_PID" 2>/dev/null || true
        LOOP_PID=
        setting recall.purge_delay 0
        setting recall.index_rebuild_interval -1
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1
    }
    declare -A TPS=()
    MODES=(A B1 B2)
    for (( r = 0; r < ROUNDS; r++ )); do
        for (( k = 0; k < 3; k++ )); do
            MODE=${MODES[$(( (k + r) % 3 ))]}
            T=$(run_mode "$MODE")
            say "   round $((r + 1)) $MODE: $T tps"
            TPS[$MODE]="${TPS[$MODE]:-} $T"
        done
    done
    report "  throughput, $CLIENTS clients, insert + latest 50 through the view, a recall a second:" \
           "$(awk -v a="${TPS[A]}" -v b1="${TPS[B1]}" -v b2="${TPS[B2]}" '
               function mean(s,   n, x, i, t) { n = split(s, x, " "); for (i = 1; i <= n; i++) t += x[i]; return t / n }
               BEGIN {
                   A = mean(a); B1 = mean(b1); B2 = mean(b2);
                   printf "A %.0f tps; B1 (purger) %.0f tps, %.3f x; B2 (purger + rebuilder) %.0f tps, %.3f x (target >= 0.9)",
                          A, B1, B1 / A, B2, B2 / A }')"
    q -d postgres -c "DROP DATABASE $DB" || true
done

# flatness
FIRST=${SIZES%% *}
LAST=${SIZES##* }
if [ "$FIRST" != "$LAST" ]; then
    for N in $RECALL_COUNTS; do
        report "flat in table size, $N recall(s): per message $LAST/$FIRST rows:" \
               "time $(awk -v a="${PER_MSG_MS[$FIRST.$N]}" -v b="${PER_MSG_MS[$LAST.$N]}" 'BEGIN { printf "%.2f", (a > 0) ? b / a : 0 }') x," \
               "WAL $(awk -v a="${PER_MSG_WAL[$FIRST.$N]}" -v b="${PER_MSG_WAL[$LAST.$N]}" 'BEGIN { printf "%.2f", (a > 0) ? b / a : 0 }') x (target <= 1.2)"
    done
fi

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
{
    echo "pg_recall erasure bench ($COMMIT), $PGVERSION, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cluster: shared_buffers=1GB, fsync=$FSYNC, full_page_writes=on, autovacuum=off; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%s\n' "${REPORT[@]}"
} | if [ -n "$OUT" ]; then tee -a "$OUT"; else cat; fi
