#!/usr/bin/env bash
# test/bench/dispatch_bench.sh: what a recall costs, and what the background
# dispatcher buys (issue 4), as ratios measured in one run:
#   (a) bare     UPDATE that sets the recall columns and nulls the content,
#                no extension: the baseline
#   (b) plpgsql  a hand-written PL/pgSQL recall (test/bench/plpgsql_recall.sql:
#                BEFORE trigger that wipes and freezes, AFTER trigger that logs
#                an event row and calls pg_notify)
#   (c) inline   pg_recall, not preloaded: NOTIFY inside the recall transaction
#   (d) worker   pg_recall preloaded: the dispatcher notifies after commit
#                (recall.purge_delay = 0: the purger off, so that (d) is the
#                recall and its notification, as the spec's target counts it)
#   (e) +purge   as (d) with the purger on (the default purge_delay, 10s): what
#                erasing every recall's old bytes adds under a recall storm
# Every transaction recalls a row not recalled before (a sequence per table).
# Then the notification latency, commit to a LISTENing client
# (test/bench/notify_latency.c), p50 and p99, under a steady recall load.
# Run by scripts/bench.sh (make bench); not part of make test.
#
# Environment: BENCH_SECONDS (default 10), BENCH_CLIENTS (default "1 4 16"),
# BENCH_ROWS (default 1000000), BENCH_FSYNC (default off), BENCH_OUT (file
# the table is appended to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-1 4 16}
ROWS=${BENCH_ROWS:-1000000}
FSYNC=${BENCH_FSYNC:-off}
OUT=${BENCH_OUT:-$ROOT/bench-results.txt}

say() { printf '%s\n' "$*" >&2; }

. "$ROOT/test/bench/cluster.sh"
bench_cluster dispatch "shared_buffers = 1GB" "fsync = $FSYNC" "full_page_writes = $FSYNC" \
    "max_wal_size = 16GB" "checkpoint_timeout = 1h" "autovacuum = off" "log_min_messages = warning"

gcc -O2 -Wall -Werror -I"$(pg_config --includedir)" -o "$WORK/notify_latency" \
    "$ROOT/test/bench/notify_latency.c" -L"$(pg_config --libdir)" -lpq

psql -qX -d postgres -c "CREATE DATABASE bench" >/dev/null
sql() { psql -qXAt -v ON_ERROR_STOP=1 -d bench "$@"; }

say "== dispatch bench: loading 4 x $ROWS messages"
sql -c "CREATE EXTENSION pg_recall"
for t in bare handmade inline worker; do
    sql <<EOF
CREATE TABLE $t (id bigint PRIMARY KEY, conversation bigint NOT NULL, sender text NOT NULL,
                 created_at timestamptz NOT NULL, body text, attachment text,
                 recalled_at timestamptz, recalled_by text, recall_reason text);
INSERT INTO $t SELECT g, g / 80, 'bench', now() - interval '1 minute',
       'message ' || g || ' ' || md5(g::text), CASE WHEN g % 10 = 0 THEN md5(g::text) END
FROM generate_series(1, $ROWS) g;
CREATE INDEX ON $t (conversation, id);
CREATE SEQUENCE ids_$t;
EOF
done
sql -f "$ROOT/test/bench/plpgsql_recall.sql"
for t in inline worker; do
    sql -c "SELECT recall.enable('$t', '{body,attachment}', sender => 'sender',
            sent_at => 'created_at', conversation => 'conversation')" >/dev/null
done
sql -c "VACUUM ANALYZE" >/dev/null

for t in bare handmade inline worker; do
    if [ "$t" = bare ]; then
        echo "UPDATE bare SET recalled_at = now(), recalled_by = 'bench', body = NULL, attachment = NULL WHERE id = (SELECT nextval('ids_bare'));"
    else
        echo "UPDATE $t SET recalled_at = now() WHERE id = (SELECT nextval('ids_$t'));"
    fi >"$WORK/$t.sql"
done

# Each point starts from fresh rows: un-recall them behind the triggers'
# back (session_replication_role = replica; the CHECK allows it, since
# recalled_at goes back to NULL), vacuum, and restart the id sequences.
reset_rows() {
    for t in bare handmade inline worker; do
        sql <<SQL
SET session_replication_role = replica;
UPDATE $t SET recalled_at = NULL, recalled_by = NULL, recall_reason = NULL,
       body = 'message ' || id || ' ' || md5(id::text),
       attachment = CASE WHEN id % 10 = 0 THEN md5(id::text) END
WHERE recalled_at IS NOT NULL;
RESET session_replication_role;
VACUUM $t;
ALTER SEQUENCE ids_$t RESTART;
SQL
    done
}

tps() {
    local out used
    out=$(PGOPTIONS='-c recall.actor=bench' "$BINDIR/pgbench" -n -M prepared -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" \
        -T "$SECS" -f "$WORK/$1.sql" bench 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    # a point that ran out of fresh rows would measure no-op updates
    used=$(sql -c "SELECT last_value FROM ids_$1")
    if [ "$used" -gt "$ROWS" ]; then
        say "bench: WARNING: $1 at $2 clients ran out of fresh rows ($used > $ROWS)"
        echo "$1 at $2 clients ran out of fresh rows; raise BENCH_ROWS" >>"$WORK/warnings"
    fi
    echo "$out"
}

declare -A R
say "== dispatch bench: (a) bare, (b) plpgsql, (c) pg_recall without preloading"
for c in $CLIENTS; do
    reset_rows
    sql -c "CHECKPOINT" >/dev/null
    R[a,$c]=$(tps bare "$c")
    R[b,$c]=$(tps handmade "$c")
    R[c,$c]=$(tps inline "$c")
    say "   $c clients: bare ${R[a,$c]}  plpgsql ${R[b,$c]}  inline ${R[c,$c]}"
done

say "== dispatch bench: (d) pg_recall with the dispatcher (restart with shared_preload_libraries), purger off"
echo "shared_preload_libraries = 'pg_recall'" >>"$DATA/postgresql.conf"
echo "recall.purge_delay = 0" >>"$DATA/postgresql.conf"
bench_restart
for c in $CLIENTS; do
    reset_rows
    sql -c "CHECKPOINT" >/dev/null
    R[d,$c]=$(tps worker "$c")
    say "   $c clients: worker ${R[d,$c]}"
done

say "== dispatch bench: (e) as (d), with the purger (recall.purge_delay = 10s)"
sql -c "ALTER SYSTEM SET recall.purge_delay = '10s'" -c "SELECT pg_reload_conf()" >/dev/null
for c in $CLIENTS; do
    reset_rows
    sql -c "CHECKPOINT" >/dev/null
    R[e,$c]=$(tps worker "$c")
    say "   $c clients: worker with purger ${R[e,$c]}"
done

say "== dispatch bench: notification latency under a steady load (200 recalls/s)"
# first let the dispatcher catch up with the throughput runs
for _ in $(seq 1 120); do
    [ "$(sql -c "SELECT d.xid > (SELECT max(e.xid) FROM recall.events e) FROM recall.dispatch_state d")" = t ] && break
    sleep 1
done
"$WORK/notify_latency" "host=$WORK port=$PORT user=postgres dbname=bench" recall $(( SECS + 3 )) >"$WORK/latency" &
LPID=$!
sleep 1
PGOPTIONS='-c recall.actor=bench' "$BINDIR/pgbench" -n -M prepared -c 4 -j 2 -R 200 -T "$SECS" \
    -f "$WORK/worker.sql" bench >/dev/null 2>&1
wait "$LPID" || true
LATENCY=$(cat "$WORK/latency")
EVENTS=$(sql -c "SELECT count(*) FROM recall.events")
DISPATCHED=$(sql -c "SELECT count(*) FILTER (WHERE dispatch_group IS NOT NULL) FROM recall.events")


ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y > 0) printf "%.3f", x / y; else print "-" }'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN { print (r + 0 >= t + 0) ? "yes" : "NO" }'; }
{
    echo
    echo "Recall throughput (tps; pgbench -M prepared, ${SECS}s per point, $ROWS-row tables, fsync=$FSYNC)"
    echo "(a) bare UPDATE, no extension; (b) hand-written PL/pgSQL with pg_notify; (c) pg_recall,"
    echo "NOTIFY in the transaction; (d) pg_recall preloaded, the dispatcher notifies after commit,"
    echo "purger off; (e) as (d) with the purger erasing every recall's old bytes (purge_delay 10s)"
    printf '%-8s %9s %9s %9s %9s %9s %7s %7s %7s %7s  %s\n' clients "(a) bare" "(b) plpgsql" "(c) inline" "(d) worker" "(e) +purge" "(c)/(a)" "(d)/(a)" "(e)/(a)" "(d)/(b)" "targets"
    for c in $CLIENTS; do
        ca=$(ratio "${R[c,$c]}" "${R[a,$c]}")
        da=$(ratio "${R[d,$c]}" "${R[a,$c]}")
        ea=$(ratio "${R[e,$c]}" "${R[a,$c]}")
        db=$(ratio "${R[d,$c]}" "${R[b,$c]}")
        target=""
        [ "$c" = 4 ] && target="(d)/(a) >= 0.85: $(met "$da" 0.85)"
        [ "$c" = 16 ] && target="(d)/(a) >= 0.80: $(met "$da" 0.80); (d)/(b) >= 4: $(met "$db" 4)"
        printf '%-8s %9.0f %9.0f %9.0f %9.0f %9.0f %7s %7s %7s %7s  %s\n' "$c" "${R[a,$c]}" "${R[b,$c]}" "${R[c,$c]}" "${R[d,$c]}" "${R[e,$c]}" "$ca" "$da" "$ea" "$db" "$target"
    done
    echo "notification latency, commit to listener (dispatcher, 200 recalls/s): $LATENCY (target p99 <= 20 ms)"
    echo "events logged: $EVENTS, of which $DISPATCHED notified by the dispatcher"
    if [ -s "$WORK/warnings" ]; then sed 's/^/WARNING: /' "$WORK/warnings"; fi
} | tee -a "$OUT"
