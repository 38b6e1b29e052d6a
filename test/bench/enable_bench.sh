#!/usr/bin/env bash
# test/bench/enable_bench.sh: what a writer feels while recall.enable() runs
# on a large table in use (issue 13: longest wait <= 100 ms).
#
# (The writer reacts to messages that are not recalled, as an application
# does through <table>_visible: rows that enable() wipes are not its.)
# A throwaway cluster holds a messages table of BENCH_ROWS rows (default
# 10M), some of them already recalled (the recall columns loaded with the
# data).  A writer (pgbench, 2 clients: INSERT of a message and UPDATE of a
# reaction count, one per transaction) runs the whole time and logs every
# transaction's latency (--log); meanwhile:
#   1. recall.enable(content => '{body}') on the table: pass 1 wipes the
#      rows already recalled, in batches, then the catalog changes;
#   2. recall.enable again with one more content column (preview): the
#      re-enable's pass 1 over the whole table, pass 2 from the event log;
#   3. recall.disable.
# For each step: its duration, and the writer's longest transaction and
# 99th percentile while it ran (from the writer's own log), against the
# same figures in a quiet window before the first step.
#
# Environment: BENCH_ROWS (default 10000000), BENCH_OUT (file the lines are
# appended to; default bench-results.txt in the repository).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROWS=${BENCH_ROWS:-10000000}
OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
. "$ROOT/test/bench/cluster.sh"
bench_cluster enable "shared_buffers = 1GB" "fsync = off" "full_page_writes = off" \
	"max_wal_size = 8GB" "autovacuum = off"
export PGDATABASE=postgres
sql() { psql -qXAt -v ON_ERROR_STOP=1 "$@"; }

echo "== loading $ROWS messages" >&2
sql <<EOF
CREATE EXTENSION pg_recall;
CREATE TABLE messages (id bigint PRIMARY KEY, conversation bigint NOT NULL, sender text NOT NULL,
                       sent_at timestamptz NOT NULL DEFAULT now(), body text, preview text,
                       reactions int NOT NULL DEFAULT 0,
                       recalled_at timestamptz, recalled_by text, recall_reason text);
INSERT INTO messages (id, conversation, sender, body, preview, recalled_at, recalled_by)
SELECT g, g / 80, 'bench', 'message text number ' || g, 'preview ' || g,
       CASE WHEN g % 1000 = 0 THEN now() END, CASE WHEN g % 1000 = 0 THEN 'bench' END
FROM generate_series(1, $ROWS) g;
CREATE INDEX ON messages (conversation, id);
CREATE SEQUENCE new_ids START $((ROWS + 1));
VACUUM ANALYZE messages;
EOF

cat >"$WORK/writer.sql" <<'EOF'
\set n random(1, :rows)
INSERT INTO messages (id, conversation, sender, body) VALUES (nextval('new_ids'), :n / 80, 'bench', 'a new message');
UPDATE messages SET reactions = reactions + 1 WHERE id = :n AND recalled_at IS NULL;
EOF

# The writer: 2 clients, every transaction's latency logged (epoch us).
cd "$WORK"
"$BINDIR/pgbench" -n -c 2 -j 2 -T 100000 -D rows="$ROWS" -f writer.sql \
	--log --log-prefix="$WORK/writer" >"$WORK/pgbench.out" 2>&1 &
WRITER=$!
trap 'kill $WRITER 2>/dev/null || true; bench_cleanup' EXIT
sleep 3

now_us() { date +%s%6N; }
declare -a NAMES STARTS ENDS
step() {
	local name=$1
	shift
	NAMES+=("$name")
	STARTS+=("$(now_us)")
	sql "$@" >/dev/null
	ENDS+=("$(now_us)")
	sleep 2
}
quiet_start=$(now_us); sleep 3; quiet_end=$(now_us)
step "enable (first, 1 content column)" -c \
	"SELECT recall.enable('messages', '{body}', sender => 'sender', sent_at => 'sent_at', conversation => 'conversation')"
step "enable again (+1 content column)" -c \
	"SELECT recall.enable('messages', '{body,preview}', sender => 'sender', sent_at => 'sent_at', conversation => 'conversation')"
step "disable" -c "SELECT recall.disable('messages')"
kill -TERM $WRITER 2>/dev/null || true
wait $WRITER 2>/dev/null || true

# pgbench --log lines: client_id transaction_no time script_no time_epoch time_us
cat "$WORK"/writer* 2>/dev/null >"$WORK/all.log" || true
window() {
	# latency figures (ms) of the transactions that ran within [from, to]
	awk -v from="$1" -v to="$2" '
		{ end_us = $5 * 1000000 + $6; lat = $3;
		  if (end_us >= from && end_us - lat <= to) print lat / 1000.0 }' "$WORK/all.log" |
		sort -n | awk '
		{ l[NR] = $1 }
		END {
			if (NR == 0) { printf "no transaction"; exit }
			p = int(NR * 0.99); if (p < 1) p = 1;
			printf "%d transactions, p99 %.1f ms, longest %.1f ms", NR, l[p], l[NR] }'
}
{
	echo "online enable, $ROWS rows (0.1% already recalled), a writer (INSERT + reaction UPDATE, 2 clients) beside it:"
	echo "  quiet window (3 s): $(window "$quiet_start" "$quiet_end")"
	for i in "${!NAMES[@]}"; do
		d=$(( (ENDS[i] - STARTS[i]) / 1000 ))
		echo "  ${NAMES[i]}: ${d} ms; writer during it: $(window "${STARTS[i]}" "${ENDS[i]}")  (target longest <= 100 ms)"
	done
} | tee -a "$OUT"
