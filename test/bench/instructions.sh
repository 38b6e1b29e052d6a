#!/usr/bin/env bash
# test/bench/instructions.sh: instructions per statement, with and without
# pg_recall, counted by valgrind's callgrind on a single-user backend.
#
# pgbench swings by +-15 % on a shared machine; instruction counts do not.
# A throwaway cluster holds databases loaded identically (BENCH_ROWS
# messages, two content columns, a conversation index):
#   plain     no extension
#   enabled   recall.enable('messages', '{body,attachment}', ...)
#   copies    as enabled, plus two registered copies (a conversation
#             preview and an indexed quote)
# For each statement, `postgres --single` runs under callgrind twice, with
# N1 and N2 prepared executions, each in its own transaction (single-user
# mode commits every line); the figure is the difference divided by
# N2 - N1 (start-up and cache loading cancel out), minus the same figure
# for an empty statement (EXECUTE of a prepared SELECT 1).  Every recall
# execution takes a row not recalled before.
#
# Output: one table, also written to BENCH_OUT (default
# bench-instructions.txt at the top of the repository).
#
# Environment:
#   BENCH_ROWS      messages per database (default 100000)
#   BENCH_N1, BENCH_N2  executions of the two runs (default 1000, 3000)
#   BENCH_INSTALL   1: build and install the extension first (default 1)
#   BENCH_PRELOAD   1: shared_preload_libraries = 'pg_recall' (the
#                   dispatcher sends notifications; the recall transaction
#                   only writes its event row); default 0: the recall
#                   transaction sends its own NOTIFY, whose cost is counted
#   BENCH_KEEP      directory: keep the cluster there and reuse it next time
#   BENCH_ANNOTATE  1: also print callgrind_annotate --inclusive=yes of the
#                   enabled recall (top 40 functions)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROWS=${BENCH_ROWS:-100000}
N1=${BENCH_N1:-1000}
N2=${BENCH_N2:-3000}
INSTALL=${BENCH_INSTALL:-1}
PRELOAD=${BENCH_PRELOAD:-0}
OUT=${BENCH_OUT:-$ROOT/bench-instructions.txt}
ANNOTATE=${BENCH_ANNOTATE:-0}

say() { printf '%s\n' "$*" >&2; }
die() { say "instructions: $*"; exit 1; }

command -v pg_config >/dev/null || die "pg_config not found (run scripts/setup.sh)"
command -v valgrind >/dev/null || die "valgrind not found (run scripts/setup.sh)"
BINDIR=$(pg_config --bindir)

if [ "$INSTALL" = 1 ]; then
	say "== building and installing pg_recall"
	make -C "$ROOT" -s >/dev/null
	if [ "$(id -u)" = 0 ]; then make -C "$ROOT" -s install >/dev/null
	else sudo make -C "$ROOT" -s install >/dev/null; fi
fi

if [ "$(id -u)" = 0 ]; then
	as_owner() { runuser -u postgres -- "$@"; }
else
	as_owner() { "$@"; }
fi

if [ -n "${BENCH_KEEP:-}" ]; then
	WORK=$BENCH_KEEP
	mkdir -p "$WORK"
else
	WORK=$(mktemp -d /tmp/pg_recall_instr.XXXXXX)
	trap 'rm -rf "$WORK"' EXIT
fi
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
DATA=$WORK/data
PORT=$(( 41000 + RANDOM % 9000 ))

load() {
	as_owner "$BINDIR/initdb" -D "$DATA" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
	{
		echo "fsync = off"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$WORK'"
		echo "port = $PORT"
		echo "autovacuum = off"
	} >>"$DATA/postgresql.conf"
	as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$WORK/log" -w start >/dev/null
	local psql=("$BINDIR/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
	"${psql[@]}" -d postgres -c "CREATE DATABASE plain"
	"${psql[@]}" -d plain -v rows="$ROWS" <<'SQL'
CREATE TABLE messages (
    id            bigint PRIMARY KEY,
    conversation  bigint NOT NULL,
    sender        text NOT NULL,
    created_at    timestamptz NOT NULL,
    body          text,
    attachment    text,
    reactions     integer NOT NULL DEFAULT 0,
    reply_to_id   bigint,
    quoted_text   text,
    recalled_at   timestamptz,
    recalled_by   text,
    recall_reason text
);
INSERT INTO messages (id, conversation, sender, created_at, body, attachment)
SELECT i, 1 + i % (:rows / 80), 'bench', now() - interval '1 second' * (:rows - i),
       md5(i::text) || ' lorem ipsum dolor sit amet consectetur adipiscing elit',
       CASE WHEN i % 10 = 0 THEN 'https://files.example/' || md5((-i)::text) || '.jpg' END
FROM generate_series(1, :rows) AS i;
CREATE INDEX messages_conversation_id_idx ON messages (conversation, id);
CREATE INDEX messages_reply_to_idx ON messages (reply_to_id);
CREATE TABLE conversations (id bigint PRIMARY KEY, last_message_id bigint, last_message_preview text);
CREATE INDEX conversations_last_idx ON conversations (last_message_id);
VACUUM (ANALYZE, FREEZE) messages;
SQL
	"${psql[@]}" -d postgres -c "CREATE DATABASE enabled TEMPLATE plain" -c "CREATE DATABASE copies TEMPLATE plain"
	for db in enabled copies; do
		"${psql[@]}" -d "$db" <<'SQL'
CREATE EXTENSION pg_recall;
SELECT recall.enable('messages', '{body,attachment}', sender => 'sender',
                     sent_at => 'created_at', conversation => 'conversation');
SQL
	done
	"${psql[@]}" -d copies -v rows="$ROWS" <<'SQL'
-- every 2nd message quotes the one before; each conversation previews its last
UPDATE messages SET reply_to_id = id - 1, quoted_text = 'quoted text of the message before'
WHERE id % 2 = 0;
INSERT INTO conversations SELECT conversation, max(id), 'preview of the last message'
FROM messages GROUP BY conversation;
SELECT recall.add_copy('messages', 'conversations', '{last_message_id}', '{last_message_preview}');
SELECT recall.add_copy('messages', 'messages', '{reply_to_id}', '{quoted_text}');
SQL
	for db in plain enabled copies; do
		"${psql[@]}" -d "$db" -c "VACUUM (ANALYZE, FREEZE)"
	done
	as_owner "$BINDIR/pg_ctl" -D "$DATA" -w stop >/dev/null
	touch "$WORK/loaded"
}

if [ ! -f "$WORK/loaded" ]; then
	say "== loading $ROWS rows into plain, enabled and copies"
	load
fi

# A statement script: PREPARE, then n executions, one per line.  Recalls
# take ids from an offset that no earlier run of this cluster used, so that
# every execution recalls a fresh row (each run's transactions commit).
OFFSET_FILE=$WORK/next_id
[ -f "$OFFSET_FILE" ] || echo 1 >"$OFFSET_FILE"
script() {
	local prepare=$1 exec=$2 n=$3 fresh=$4 first i
	first=$(cat "$OFFSET_FILE")
	echo "$prepare"
	if [ "$fresh" = 1 ]; then
		(( first + n < ROWS )) || die "out of fresh rows: use a new BENCH_KEEP or more BENCH_ROWS"
		for ((i = first; i < first + n; i++)); do echo "EXECUTE $exec($i);"; done
		echo $((first + n)) >"$OFFSET_FILE"
	else
		for ((i = 1; i <= n; i++)); do echo "EXECUTE $exec($(( (i * 7919) % ROWS + 1 )));"; done
	fi
}

# Total instructions of a single-user run of a script (callgrind, counting
# the whole process: start-up cancels out in per_statement).
PRELOAD_OPT=()
[ "$PRELOAD" = 1 ] && PRELOAD_OPT=(-c shared_preload_libraries=pg_recall)
count() {
	local db=$1 file=$2 out
	out=$WORK/cg.$$.$RANDOM
	as_owner valgrind --tool=callgrind --callgrind-out-file="$out" \
		"$BINDIR/postgres" --single -D "$DATA" -c fsync=off -c autovacuum=off \
		"${PRELOAD_OPT[@]}" "$db" <"$file" >"$WORK/single.log" 2>&1 \
		|| { cat "$WORK/single.log" >&2; die "single-user run failed"; }
	if grep -q ERROR "$WORK/single.log"; then
		grep -m3 ERROR "$WORK/single.log" >&2
		die "a statement failed in $db"
	fi
	awk '/^summary:/ { print $2 }' "$out"
	[ "$ANNOTATE_KEEP" = 1 ] && cp "$out" "$WORK/last.callgrind"
	rm -f "$out"
}
ANNOTATE_KEEP=0

# Instructions per execution of a statement: (I(N2) - I(N1)) / (N2 - N1).
per_statement() {
	local db=$1 prepare=$2 exec=$3 fresh=$4 a b f
	f=$WORK/script.sql
	script "$prepare" "$exec" "$N1" "$fresh" >"$f"
	a=$(count "$db" "$f")
	script "$prepare" "$exec" "$N2" "$fresh" >"$f"
	b=$(count "$db" "$f")
	echo $(( (b - a) / (N2 - N1) ))
}

chown -R postgres: "$WORK" 2>/dev/null || true

P_EMPTY='PREPARE s(bigint) AS SELECT 1;'
P_RECALL="PREPARE s(bigint) AS UPDATE messages SET recalled_at = now(), recalled_by = 'bench' WHERE id = \$1;"
P_BARE="PREPARE s(bigint) AS UPDATE messages SET recalled_at = now(), recalled_by = 'bench', body = NULL, attachment = NULL WHERE id = \$1;"
P_REACT='PREPARE s(bigint) AS UPDATE messages SET reactions = reactions + 1 WHERE id = $1;'
P_INSERT="PREPARE s(bigint) AS INSERT INTO messages (id, conversation, sender, created_at, body) VALUES (\$1 + 100000000, \$1 % 1000, 'bench', now(), 'a new message of about the usual length, sent to the conversation');"
P_RECALL_FN="PREPARE s(bigint) AS SELECT recall.recall('messages', \$1, actor => 'bench');"

say "== counting (callgrind, N1=$N1, N2=$N2; each statement runs N1 + N2 times per database)"
floor_plain=$(per_statement plain "$P_EMPTY" s 0)
floor_enabled=$(per_statement enabled "$P_EMPTY" s 0)
say "   empty statement: plain $floor_plain, enabled $floor_enabled"

row() {
	local name=$1 base=$2 mine=$3 target=$4
	awk -v n="$name" -v a="$base" -v b="$mine" -v t="$target" 'BEGIN {
		printf "%-44s %10.1fk %10.1fk %7.2fx   %s\n", n, a / 1000, b / 1000, (a > 0 ? b / a : 0), t }'
}

bare=$(( $(per_statement plain "$P_BARE" s 1) - floor_plain ))
recall=$(( $(per_statement enabled "$P_RECALL" s 1) - floor_enabled ))
recall_fn=$(( $(per_statement enabled "$P_RECALL_FN" s 1) - floor_enabled ))
ANNOTATE_KEEP=$ANNOTATE
recall_copies=$(( $(per_statement copies "$P_RECALL" s 1) - floor_enabled ))
ANNOTATE_KEEP=0
react_plain=$(( $(per_statement plain "$P_REACT" s 0) - floor_plain ))
react=$(( $(per_statement enabled "$P_REACT" s 0) - floor_enabled ))
insert_plain=$(( $(per_statement plain "$P_INSERT" s 1) - floor_plain ))
insert=$(( $(per_statement enabled "$P_INSERT" s 1) - floor_enabled ))

{
	echo "pg_recall: instructions per statement (valgrind callgrind, single-user backend,"
	echo "$ROWS-row table, two content columns; each execution its own transaction,"
	echo "(I($N2) - I($N1)) / $((N2 - N1)) minus an empty statement; preload=$PRELOAD)"
	echo
	printf '%-44s %11s %11s %8s   %s\n' "statement" "baseline" "pg_recall" "ratio" "target"
	row "recall (UPDATE) vs bare wiping UPDATE" "$bare" "$recall" "<= 1.50x"
	row "recall.recall() vs bare wiping UPDATE" "$bare" "$recall_fn" "-"
	row "recall with 2 copies vs recall without" "$recall" "$recall_copies" "<= 1.10x"
	row "non-recall UPDATE (reaction count)" "$react_plain" "$react" "<= 1.15x"
	row "INSERT" "$insert_plain" "$insert" "<= 1.03x"
} | tee "$OUT"

if [ "$ANNOTATE" = 1 ] && [ -f "$WORK/last.callgrind" ]; then
	callgrind_annotate --inclusive=yes "$WORK/last.callgrind" 2>/dev/null | head -60
fi
