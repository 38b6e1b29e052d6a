#!/usr/bin/env bash
# test/bench/actor_bench.sh: recall throughput with actor_source 'setting'
# and a JSON claim (request.jwt.claims ->> 'sub', as PostgREST sets it) vs
# 'statement' (issue 7; target >= 0.98 at 16 clients).  Two identical
# tables in one throwaway cluster, pgbench -M prepared, each transaction
# recalls a fresh row.  Not part of make test.
#
# Environment: BENCH_SECONDS (default 10), BENCH_CLIENTS (default "16"),
# BENCH_ROWS (default 600000), BENCH_OUT (file the lines are appended to).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-16}
ROWS=${BENCH_ROWS:-600000}
OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
. "$ROOT/test/bench/cluster.sh"
bench_cluster actor "shared_buffers = 512MB" "fsync = off" "full_page_writes = off" \
    "autovacuum = off" "shared_preload_libraries = 'pg_recall'"
export PGDATABASE=postgres
sql() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }

sql -c "CREATE EXTENSION pg_recall"
for t in by_statement by_claim; do
    sql <<EOF
CREATE TABLE $t (id bigint PRIMARY KEY, conversation bigint, sender text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(), body text);
INSERT INTO $t SELECT g, g / 80, 'bench', now(), 'message ' || g FROM generate_series(1, $ROWS) g;
CREATE SEQUENCE ids_$t;
EOF
    echo "UPDATE $t SET recalled_at = now() WHERE id = (SELECT nextval('ids_$t'));" >"$WORK/$t.sql"
done
sql -c "SELECT recall.enable('by_statement', '{body}', sender => 'sender', conversation => 'conversation')" >/dev/null
sql -c "SELECT recall.enable('by_claim', '{body}', sender => 'sender', conversation => 'conversation',
        actor_source => 'setting', actor_setting => 'request.jwt.claims', actor_claim => 'sub')" >/dev/null
sql -c "VACUUM ANALYZE" >/dev/null

tps() {
    PGOPTIONS="$2" "$BINDIR/pgbench" -n -M prepared -c "$3" -j 2 -T "$SECS" -f "$WORK/$1.sql" 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
for c in $CLIENTS; do
    # alternate, twice each, and sum
    s1=$(tps by_statement "-c recall.actor=bench" "$c")
    c1=$(tps by_claim "-c request.jwt.claims={\"sub\":\"bench\",\"role\":\"web\"}" "$c")
    c2=$(tps by_claim "-c request.jwt.claims={\"sub\":\"bench\",\"role\":\"web\"}" "$c")
    s2=$(tps by_statement "-c recall.actor=bench" "$c")
    line=$(awk -v c="$c" -v s1="$s1" -v s2="$s2" -v c1="$c1" -v c2="$c2" 'BEGIN {
        r = (c1 + c2) / (s1 + s2);
        printf "actor_source setting+claim vs statement, %d clients: %.0f vs %.0f tps, ratio %.3f (target >= 0.98: %s)",
               c, (c1 + c2) / 2, (s1 + s2) / 2, r, (r >= 0.98 ? "yes" : "NO") }')
    echo "$line" | tee -a "$OUT"
done
events=$(sql -c "SELECT count(*) FROM recall.events")
echo "events logged: $events" >&2
