#!/usr/bin/env bash
# test/bench/copies.sh: what registered copies cost a recall.
#
# Recall throughput with two registered copies (a conversation preview and
# a quote, each found through an index) against the same recall without
# copies, in one run, as a ratio (target >= 0.9).
#
# A throwaway cluster (initdb in a temporary directory; as root, owned by
# the postgres user) holds two databases loaded identically and enabled for
# recall the same way; "copies" also has
#     recall.add_copy('messages', 'conversations', '{last_message_id}', '{last_message_preview}')
#     recall.add_copy('messages', 'messages', '{reply_to_id}', '{quoted_text}')
# Data: BENCH_ROWS messages (default 200000), 80 per conversation, every
# message sent by "bench"; every 2nd message is quoted by the next one (so
# half the recalls have a quote to wipe); each conversation's preview
# points at its last message.  Each pgbench transaction recalls a fresh
# message:
#     SELECT recall.recall('messages', nextval('bench_ids'));
# as the role bench with PGOPTIONS='-c recall.actor=bench' (a self-recall).
# pgbench -M prepared -n at each client count; the seconds of a point are
# split in BENCH_SLICES slices run in ABBA order, each slice on a fresh copy
# of its database (CREATE DATABASE ... TEMPLATE), so that no slice runs out
# of fresh rows and drift hits both variants alike.
#
# Environment:
#   BENCH_SECONDS  seconds per variant and client count (default 10)
#   BENCH_SLICES   slices per variant and client count (default 2)
#   BENCH_CLIENTS  client counts (default "4 16")
#   BENCH_ROWS     messages (default 200000)
#   BENCH_FSYNC    fsync of the throwaway cluster (default off; synchronous_commit stays on)
#   BENCH_PRELOAD  1: shared_preload_libraries = 'pg_recall' and recall.purge_delay = 0, the notification
#                  dispatcher (default 1); 0: NOTIFY inside each recall
#   BENCH_INSTALL  1: build and install the extension from this tree first (default 1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_PER=${BENCH_SECONDS:-10}
SLICES=${BENCH_SLICES:-2}
CLIENTS=${BENCH_CLIENTS:-4 16}
ROWS=${BENCH_ROWS:-200000}
FSYNC=${BENCH_FSYNC:-off}
PRELOAD=${BENCH_PRELOAD:-1}
INSTALL=${BENCH_INSTALL:-1}
(( SLICES >= 1 )) || SLICES=1
SLICE_LEN=$(( (SECONDS_PER + SLICES - 1) / SLICES ))
(( SLICE_LEN >= 1 )) || SLICE_LEN=1

say() { printf '%s\n' "$*" >&2; }
die() { say "copies bench: $*"; exit 1; }

command -v pg_config >/dev/null || die "pg_config not found"
BINDIR=$(pg_config --bindir)

if [ "$INSTALL" = 1 ]; then
    say "== building and installing pg_recall"
    make -C "$ROOT" -s >/dev/null
    make -C "$ROOT" -s install >/dev/null
fi
[ -f "$(pg_config --sharedir)/extension/pg_recall.control" ] \
    || die "pg_recall is not installed (make install)"

# initdb refuses root: as root, the cluster belongs to the postgres user
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a postgres user"
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

WORK=$(mktemp -d /tmp/pg_recall_copies_bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
DATA=$WORK/data
PORT=$(( 55000 + RANDOM % 5000 ))
STARTED=0
cleanup() {
    if [ "$STARTED" = 1 ]; then
        as_owner "$BINDIR/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "== throwaway cluster in $WORK (port $PORT)"
as_owner "$BINDIR/initdb" -D "$DATA" -A trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$WORK'
port = $PORT
max_connections = 60
shared_buffers = 512MB
synchronous_commit = on
fsync = $FSYNC
full_page_writes = $FSYNC
max_wal_size = 8GB
checkpoint_timeout = 1h
autovacuum = off
log_min_messages = warning
EOF
# the purger off: its cost (erasing the old bytes of every recall and every
# wiped copy) is erasure's, measured by erasure_bench.sh and dispatch_bench.sh
[ "$PRELOAD" = 1 ] && printf '%s\n' "shared_preload_libraries = 'pg_recall'" "recall.purge_delay = 0" \
    >>"$DATA/postgresql.conf"
as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w start >/dev/null \
    || { cat "$WORK/server.log" >&2; die "the cluster did not start"; }
STARTED=1

export PGHOST=$WORK PGPORT=$PORT
q() { PGOPTIONS='-c client_min_messages=warning' "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# --- data ----------------------------------------------------------------
say "== loading $ROWS messages"
q -U postgres -d postgres -c "CREATE ROLE bench LOGIN" \
                          -c "CREATE DATABASE tmpl_plain OWNER bench"
q -U postgres -d tmpl_plain -c "CREATE EXTENSION pg_recall" -c "CREATE EXTENSION pg_prewarm"
q -U bench -d tmpl_plain -v rows="$ROWS" <<'SQL' >/dev/null
SET synchronous_commit = off;
CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id bigint NOT NULL,
    sender          text NOT NULL,
    created_at      timestamptz NOT NULL,
    body            text,
    reply_to_id     bigint,
    quoted_text     text
);
CREATE TABLE conversations (
    id                   bigint PRIMARY KEY,
    title                text NOT NULL,
    last_message_id      bigint,
    last_message_preview text
);
-- message i is in conversation (i - 1) / 80 + 1; every even message
-- quotes the odd one before it
INSERT INTO messages
SELECT i, (i - 1) / 80 + 1, 'bench', now() - interval '1 minute',
       'message ' || i || ': ' || md5(i::text) || md5((i + 1)::text),
       CASE WHEN i % 2 = 0 THEN i - 1 END,
       CASE WHEN i % 2 = 0 THEN 'message ' || (i - 1) || ': ' || md5((i - 1)::text) || md5(i::text) END
FROM generate_series(1, :rows) AS i;
INSERT INTO conversations
SELECT c, 'conversation ' || c, m.id, m.body
FROM generate_series(1, (:rows - 1) / 80 + 1) AS c
JOIN LATERAL (SELECT id, body FROM messages WHERE conversation_id = c
              ORDER BY id DESC LIMIT 1) m ON true;
CREATE INDEX messages_conversation_id_idx ON messages (conversation_id, id);
CREATE INDEX messages_reply_to_id_idx ON messages (reply_to_id);
CREATE INDEX conversations_last_message_id_idx ON conversations (last_message_id);
CREATE SEQUENCE bench_ids;
SELECT recall.enable('messages', '{body}', sender => 'sender', sent_at => 'created_at',
                     conversation => 'conversation_id');
VACUUM ANALYZE messages;
VACUUM ANALYZE conversations;
SQL
q -U postgres -d postgres -c "CHECKPOINT" -c "CREATE DATABASE tmpl_copies TEMPLATE tmpl_plain OWNER bench"
q -U bench -d tmpl_copies <<'SQL' >/dev/null
SELECT recall.add_copy('messages', 'conversations', '{last_message_id}', '{last_message_preview}');
SELECT recall.add_copy('messages', 'messages', '{reply_to_id}', '{quoted_text}');
SQL
q -U postgres -d postgres -c "CHECKPOINT"

cat >"$WORK/recall.sql" <<'SQL'
SELECT recall.recall('messages', nextval('bench_ids'));
SQL

# --- measuring -------------------------------------------------------------
# one_slice VARIANT CLIENTS: a fresh copy of the variant's database, then
# one pgbench run on it; prints its tps (run_VARIANT stays for check_slice)
one_slice() {
    local variant=$1 c=$2 j out
    q -U postgres -d postgres -c "DROP DATABASE IF EXISTS run_$variant" \
        -c "CREATE DATABASE run_$variant TEMPLATE tmpl_$variant OWNER bench" >/dev/null
    q -U postgres -d "run_$variant" -c "SELECT pg_prewarm(c.oid) FROM pg_class c
        WHERE c.relname IN ('messages', 'messages_pkey', 'messages_reply_to_id_idx',
                            'conversations', 'conversations_pkey',
                            'conversations_last_message_id_idx')" >/dev/null
    q -U postgres -d postgres -c "CHECKPOINT" >/dev/null
    j=$(( c < 4 ? c : 4 ))
    if ! out=$(PGOPTIONS='-c recall.actor=bench' "$BINDIR/pgbench" -U bench -d "run_$variant" \
                 -M prepared -n -T "$SLICE_LEN" -c "$c" -j "$j" -f "$WORK/recall.sql" 2>&1); then
        say "$out"; die "pgbench on $variant with $c clients failed"
    fi
    if grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
        say "$out"; die "pgbench on $variant with $c clients had failed transactions"
    fi
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1
}

# check_slice VARIANT: every transaction recalled a fresh row; with copies,
# no quote or preview of a recalled message kept its text
check_slice() {
    local variant=$1 last recalled leaks
    last=$(q -U postgres -d "run_$variant" -c "SELECT last_value FROM bench_ids")
    recalled=$(q -U postgres -d "run_$variant" -c "SELECT count(*) FROM messages WHERE recalled_at IS NOT NULL")
    [ "$last" = "$recalled" ] \
        || die "$variant: $last transactions but $recalled rows recalled (raise BENCH_ROWS)"
    if [ "$variant" = copies ]; then
        leaks=$(q -U postgres -d "run_$variant" -c "
            SELECT (SELECT count(*) FROM messages q JOIN messages m ON m.id = q.reply_to_id
                    WHERE m.recalled_at IS NOT NULL AND q.quoted_text IS NOT NULL)
                 + (SELECT count(*) FROM conversations c JOIN messages m ON m.id = c.last_message_id
                    WHERE m.recalled_at IS NOT NULL AND c.last_message_preview IS NOT NULL)")
        [ "$leaks" = 0 ] || die "copies: $leaks copies of recalled messages kept their text"
        WIPED_QUOTES=$(( WIPED_QUOTES + $(q -U postgres -d "run_$variant" -c "
            SELECT count(*) FROM messages q JOIN messages m ON m.id = q.reply_to_id
            WHERE m.recalled_at IS NOT NULL") ))
        WIPED_PREVIEWS=$(( WIPED_PREVIEWS + $(q -U postgres -d "run_$variant" -c "
            SELECT count(*) FROM conversations c JOIN messages m ON m.id = c.last_message_id
            WHERE m.recalled_at IS NOT NULL") ))
    fi
    TOTAL_RECALLS=$(( TOTAL_RECALLS + recalled ))
}

WIPED_QUOTES=0
WIPED_PREVIEWS=0
TOTAL_RECALLS=0
RESULTS=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "== measuring: $SECONDS_PER s per variant and client count ($SLICES x $SLICE_LEN s), clients: $CLIENTS"
point=0
for c in $CLIENTS; do
    sum_p=0; sum_c=0; ratios=()
    for (( i = 0; i < SLICES; i++ )); do
        if (( (point + i) % 2 == 0 )); then
            tp=$(one_slice plain "$c"); check_slice plain
            tc=$(one_slice copies "$c"); check_slice copies
        else
            tc=$(one_slice copies "$c"); check_slice copies
            tp=$(one_slice plain "$c"); check_slice plain
        fi
        say "   $c clients, slice $((i + 1)): without copies $tp tps, with copies $tc tps"
        sum_p=$(awk -v a="$sum_p" -v b="$tp" 'BEGIN { print a + b }')
        sum_c=$(awk -v a="$sum_c" -v b="$tc" 'BEGIN { print a + b }')
        ratios+=("$(awk -v p="$tp" -v e="$tc" 'BEGIN { printf "%.3f", e / p }')")
    done
    point=$(( point + 1 ))
    RESULTS+=("$(awk -v c="$c" -v p="$sum_p" -v e="$sum_c" -v k="$SLICES" -v r="${ratios[*]}" 'BEGIN {
        p /= k; e /= k; ratio = e / p;
        printf "%7d %16.1f %16.1f %7.3f %15s %5s", c, p, e, ratio, r, (ratio >= 0.9) ? "yes" : "NO" }')")
done

# --- report ------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
{
    echo "pg_recall copies bench ($COMMIT + working tree), $(pg_config --version), $(nproc) CPUs"
    echo "$ROWS messages, 80 per conversation; SELECT recall.recall('messages', nextval('bench_ids')) per transaction"
    echo "pgbench -M prepared -n, $SLICES x $SLICE_LEN s per variant and client count, ABBA, fresh database per slice"
    echo "cluster: fsync=$FSYNC, synchronous_commit=on, preload=$PRELOAD; load average before: $LOAD_BEFORE"
    echo "with copies: preview (conversations.last_message_id) + quote (messages.reply_to_id), both indexed"
    echo "             $TOTAL_RECALLS recalls in all; $WIPED_QUOTES quotes and $WIPED_PREVIEWS previews wiped, none left with text"
    echo
    printf '%7s %16s %16s %7s %15s %5s\n' clients "without tps" "with copies tps" ratio "slice ratios" ">=0.9"
    printf '%s\n' "${RESULTS[@]}"
}
