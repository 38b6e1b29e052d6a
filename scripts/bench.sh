#!/usr/bin/env bash
# scripts/bench.sh: pg_recall's pgbench figures, as ratios in one run.
#
# Builds and installs the extension, starts a throwaway cluster, loads a
# 1M-row messages table twice (database "plain": no extension; database
# "enabled": the same table with recall.enable) and runs each workload with
# `pgbench -M prepared -n` on both, alternating, at each client count:
#   insert        INSERT of a new message                      target >= 0.98
#   latest50      latest 50 messages of a random conversation:
#                 messages_visible vs the table with
#                 `recalled_at IS NULL`                        target >= 0.97
#   react         a non-recall UPDATE (reaction count)         target >= 0.97
#   recall        UPDATE ... SET recalled_at = now() on the enabled table vs
#                 a bare UPDATE that sets the recall columns and nulls the
#                 content on the plain one; a fresh id per transaction
#                 target >= 0.85 at 4 clients, >= 0.80 at 16 (the spec's,
#                 which assumes the notification dispatcher)
# A second table measures the same workloads interleaved: one pgbench run
# whose clients pick, transaction by transaction, the enabled table or its
# never-enabled twin in the same database (test/bench/twin*.sql), and the
# ratio of their mean latencies.  Other load on the machine then hits both
# alike, so this ratio holds even where sequential runs are noisy; it is a
# cost ratio, so contention (the NOTIFY lock of many recalling clients)
# shows only in the first table.
# Both tables are printed and written to bench-results.txt at the top of the
# repository.
#
# Environment:
#   BENCH_SECONDS   seconds per variant and point (default 10)
#   BENCH_SLICE     the seconds of a point are run in slices of about this
#                   length, plain and enabled alternating (A B B A ...), so
#                   that drift and other load on the machine hit both alike
#                   (default 2)
#   BENCH_CLIENTS   client counts (default "1 4 16")
#   BENCH_MIX_CLIENTS  client counts of the interleaved runs (default "1 4";
#                   recall: the first one only); empty: no interleaved runs
#   BENCH_ROWS      rows in the messages table (default 1000000)
#   BENCH_FSYNC     fsync and full_page_writes of the throwaway cluster
#                   (default off: the disk of a VM and full-page images after
#                   each checkpoint add noise, and no figure here is about
#                   the disk; synchronous_commit stays on)
#   BENCH_PRELOAD   1: shared_preload_libraries = 'pg_recall' (the
#                   notification dispatcher), with recall.purge_delay = 0
#                   (the purger's cost is measured by dispatch_bench.sh)
#   BENCH_OUT       result file (default bench-results.txt in the repo)
#   BENCH_TESTS     workloads to run (default "noise latest50 react insert
#                   recall"; noise: the react workload on "plain" against
#                   itself, the ratio a run gets with no difference at all)
#   BENCH_INSTRUCTIONS  0: skip test/bench/instructions.sh (instructions per
#                   statement, valgrind callgrind, with and without preload)
#   BENCH_COPIES    0: skip test/bench/copies.sh (a recall with two
#                   registered copies against one without)
#   BENCH_BULK      0: skip test/bench/bulk_update.sh (a non-recall UPDATE
#                   of all 1M rows, time and peak memory)
#   BENCH_ENABLE    0: skip test/bench/enable_bench.sh (a writer beside
#                   recall.enable() on a BENCH_ENABLE_ROWS-row table,
#                   default 10000000)
#   BENCH_ERASURE   0: skip test/bench/erasure_bench.sh (purge cost and a
#                   writer's waits at each of BENCH_ERASURE_SIZES rows,
#                   default "1000000 10000000")
#   BENCH_DISPATCH  0: skip test/bench/dispatch_bench.sh (recall with and
#                   without the dispatcher, a PL/pgSQL baseline, latency)
#   BENCH_CITUS     0: skip test/bench/citus_bench.sh (recall through a Citus
#                   coordinator; it skips by itself without Citus)
#   BENCH_KEEP      1: leave the cluster running at the end (for profiling;
#                   the script prints how to connect and how to stop it)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/test/bench
SECONDS_PER=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-1 4 16}
MIX_CLIENTS=${BENCH_MIX_CLIENTS-1 4}
SLICE=${BENCH_SLICE:-2}
NSLICES=$(( (SECONDS_PER + SLICE - 1) / SLICE ))
(( NSLICES >= 1 )) || NSLICES=1
SLICE_LEN=$(( (SECONDS_PER + NSLICES - 1) / NSLICES ))
ROWS=${BENCH_ROWS:-1000000}
FSYNC=${BENCH_FSYNC:-off}
PRELOAD=${BENCH_PRELOAD:-0}
OUT=${BENCH_OUT:-$ROOT/bench-results.txt}
TESTS=${BENCH_TESTS:-noise latest50 react insert recall}
KEEP=${BENCH_KEEP:-0}
CONVERSATIONS=$(( ROWS / 80 > 0 ? ROWS / 80 : 1 ))

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

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
# initdb refuses root: as root, the cluster belongs to the postgres user.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs a postgres user"
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

WORK=$(mktemp -d /tmp/pg_recall_bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
DATA=$WORK/data
SOCK=$WORK
PORT=$(( 55000 + RANDOM % 5000 ))
LOG=$WORK/server.log
STARTED=0

cleanup() {
    if [ "$KEEP" = 1 ] && [ "$STARTED" = 1 ]; then
        say "bench: cluster kept: PGHOST=$SOCK PGPORT=$PORT psql -U postgres -d enabled"
        say "bench: stop it with: $(if [ "$(id -u)" = 0 ]; then echo 'runuser -u postgres -- '; fi)$BINDIR/pg_ctl -D $DATA stop; rm -rf $WORK"
        return
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
# pg_recall bench
listen_addresses = ''
unix_socket_directories = '$SOCK'
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
if [ "$PRELOAD" = 1 ]; then
    # the purger is off here: erasing every recall's old bytes under a
    # recall storm is erasure's cost, measured by dispatch_bench.sh (e) and
    # erasure_bench.sh; it would also run during the plain slices
    printf '%s\n' "shared_preload_libraries = 'pg_recall'" "recall.purge_delay = 0" \
        >>"$DATA/postgresql.conf"
fi
as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w start >/dev/null \
    || { cat "$LOG" >&2; die "the cluster did not start"; }
STARTED=1

export PGHOST=$SOCK PGPORT=$PORT
PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -U postgres -At "$@"; }

# --- data --------------------------------------------------------------------
say "== loading $ROWS messages ($CONVERSATIONS conversations) into \"plain\""
q -d postgres -c "CREATE ROLE bench LOGIN" \
              -c "CREATE DATABASE plain OWNER bench"
q -d plain -c "CREATE EXTENSION pg_prewarm"
"${PSQL[@]}" -U bench -d plain -v rows="$ROWS" -v conversations="$CONVERSATIONS" \
    -f "$BENCH_DIR/schema.sql"
say "== copying it to \"enabled\" and enabling recall"
q -d postgres -c "CHECKPOINT" -c "CREATE DATABASE enabled TEMPLATE plain OWNER bench"
q -d enabled -c "CREATE EXTENSION pg_recall"
"${PSQL[@]}" -U bench -d enabled -f "$BENCH_DIR/enable.sql" >/dev/null
if [ -n "${MIX_CLIENTS// /}" ]; then
    # the interleaved runs get their own copy: the enabled table and its
    # never-enabled twin, with the same history from here on
    say "== copying it to \"mixed\" with a never-enabled twin, enabling recall"
    q -d postgres -c "CREATE DATABASE mixed TEMPLATE plain OWNER bench"
    "${PSQL[@]}" -U bench -d mixed -f "$BENCH_DIR/twin.sql"
    q -d mixed -c "CREATE EXTENSION pg_recall"
    "${PSQL[@]}" -U bench -d mixed -f "$BENCH_DIR/enable.sql" >/dev/null
fi

# prewarm DB: the messages tables and their indexes into shared_buffers
prewarm() {
    q -d "$1" -c "SELECT pg_prewarm(c.oid) FROM pg_class c
                  WHERE c.relname ~ '^messages(_twin)?(_pkey|_conversation_id_idx)?$'
                    AND c.relkind IN ('r', 'i')" >/dev/null
}

# The view must plan exactly as the same query on the table.
plan() {
    q -d enabled -c "EXPLAIN (COSTS OFF) SELECT id, conversation, sender, created_at, body,
                            attachment, reactions FROM $1 WHERE conversation = 42 $2
                     ORDER BY id DESC LIMIT 50"
}
PLAN_VIEW=$(plan messages_visible "")
PLAN_TABLE=$(plan messages "AND recalled_at IS NULL")
if [ "$PLAN_VIEW" = "$PLAN_TABLE" ]; then PLAN_SAME=yes; else PLAN_SAME=NO; fi

# --- measuring ---------------------------------------------------------------
# run_pgbench DB SCRIPT CLIENTS: prints the tps of one run
run_pgbench() {
    local db=$1 script=$2 c=$3 j out
    j=$(( c < 2 ? c : 2 ))
    if ! out=$("$BINDIR/pgbench" -U bench -d "$db" -M prepared -n -T "$SLICE_LEN" \
                 -c "$c" -j "$j" -f "$BENCH_DIR/$script" 2>&1); then
        say "$out"
        die "pgbench $script on $db with $c clients failed"
    fi
    if grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
        say "$out"
        die "pgbench $script on $db with $c clients had failed transactions"
    fi
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -n1
}

# The table rows, kept for the summary.
RESULTS=()
MIX_RESULTS=()
point=0

# measure NAME PLAIN_SCRIPT ENABLED_SCRIPT TARGET_FN [DB_A DB_B]
measure() {
    local name=$1 plain_script=$2 enabled_script=$3 target_fn=$4 c i
    local db_a=${5:-plain} db_b=${6:-enabled}
    for c in $CLIENTS; do
        local tps_p=() tps_e=() tp te
        q -d postgres -c "CHECKPOINT" >/dev/null
        for (( i = 0; i < NSLICES; i++ )); do
            # alternate which variant runs first, so drift favours neither
            if (( (point + i) % 2 == 0 )); then
                tp=$(run_pgbench "$db_a" "$plain_script" "$c")
                te=$(run_pgbench "$db_b" "$enabled_script" "$c")
            else
                te=$(run_pgbench "$db_b" "$enabled_script" "$c")
                tp=$(run_pgbench "$db_a" "$plain_script" "$c")
            fi
            tps_p+=("$tp")
            tps_e+=("$te")
        done
        point=$(( point + 1 ))
        local target
        target=$($target_fn "$c")
        RESULTS+=("$(awk -v n="$name" -v c="$c" -v ps="${tps_p[*]}" -v es="${tps_e[*]}" \
                         -v t="$target" 'BEGIN {
            k = split(ps, P, " "); split(es, E, " ");
            p = 0; e = 0;
            for (i = 1; i <= k; i++) {
                p += P[i]; e += E[i];
                R[i] = (P[i] > 0) ? E[i] / P[i] : 0;
            }
            # sort the pair ratios (insertion sort) for the median
            for (i = 2; i <= k; i++) {
                v = R[i];
                for (j = i - 1; j >= 1 && R[j] > v; j--) R[j + 1] = R[j];
                R[j + 1] = v;
            }
            lo = R[1]; hi = R[k];
            ratio = (k % 2) ? R[(k + 1) / 2] : (R[k / 2] + R[k / 2 + 1]) / 2;
            p /= k; e /= k;
            spread = (k > 1) ? sprintf("%.2f-%.2f", lo, hi) : "-";
            if (t == "-") met = "-"; else met = (ratio >= t) ? "yes" : "NO";
            printf "%-10s %7d %12.1f %12.1f %7.3f %11s %8s %5s",
                   n, c, p, e, ratio, spread, (t == "-") ? "-" : ">=" t, met }')")
        say "   ${RESULTS[-1]}"
    done
}

# measure_mix NAME TWIN_SCRIPT ENABLED_SCRIPT TARGET_FN CLIENTS...: one
# interleaved run per client count in database "mixed"; the ratio is the
# twin's mean latency over the enabled table's (a throughput ratio).
measure_mix() {
    local name=$1 twin_script=$2 enabled_script=$3 target_fn=$4 c j out logp
    shift 4
    for c in "$@"; do
        j=$(( c < 2 ? c : 2 ))
        logp=$WORK/mixlog
        rm -f "$logp".*
        q -d postgres -c "CHECKPOINT" >/dev/null
        if ! out=$("$BINDIR/pgbench" -U bench -d mixed -M prepared -n -T "$SECONDS_PER" \
                     -c "$c" -j "$j" -f "$BENCH_DIR/$twin_script" -f "$BENCH_DIR/$enabled_script" \
                     -l --log-prefix="$logp" 2>&1); then
            say "$out"
            die "interleaved pgbench $twin_script + $enabled_script with $c clients failed"
        fi
        if grep -q 'number of failed transactions: [1-9]' <<<"$out"; then
            say "$out"
            die "interleaved pgbench $twin_script + $enabled_script with $c clients had failed transactions"
        fi
        local target
        target=$($target_fn "$c")
        # per-transaction log: client, transaction, latency (us), script, ...
        MIX_RESULTS+=("$(cat "$logp".* | awk -v n="$name" -v c="$c" -v t="$target" '
            { s[$4] += $3; k[$4]++ }
            END {
                p = k[0] ? s[0] / k[0] : 0; e = k[1] ? s[1] / k[1] : 0;
                ratio = (e > 0) ? p / e : 0;
                if (t == "-") met = "-"; else met = (ratio >= t) ? "yes" : "NO";
                printf "%-10s %7d %11.1f %11.1f %9d %9d %7.3f %8s %5s",
                       n, c, p, e, k[0], k[1], ratio, (t == "-") ? "-" : ">=" t, met }')")
        rm -f "$logp".*
        say "   ${MIX_RESULTS[-1]}"
    done
}

target_none()   { echo -; }
target_insert() { echo 0.98; }
target_read()   { echo 0.97; }
target_update() { echo 0.97; }
target_recall() {
    case $1 in
        4) echo 0.85 ;;
        16) echo 0.80 ;;
        *) echo - ;;
    esac
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# mix_clients_for TEST: the interleaved client counts of a workload
mix_clients_for() {
    if [ "$1" = recall ]; then
        set -- $MIX_CLIENTS
        echo "${1:-}"
    else
        echo "$MIX_CLIENTS"
    fi
}
# check_ids DB TABLE...: every recall transaction must have found a fresh row
check_ids() {
    local db=$1 last recalled t
    shift
    last=$(q -d "$db" -c "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_ids")
    recalled=0
    for t in "$@"; do
        recalled=$(( recalled + $(q -d "$db" -c "SELECT count(*) FROM $t WHERE recalled_at IS NOT NULL") ))
    done
    if [ "$recalled" != "$last" ]; then
        say "bench: WARNING: $db: $last recall transactions but $recalled rows recalled" \
            "(ran out of fresh ids? raise BENCH_ROWS or lower BENCH_SECONDS)"
        ID_WARNING="WARNING: $db: $last recall transactions but $recalled rows recalled (ran out of fresh ids)"
    fi
}

# Interleaved runs first, in their own database, dropped afterwards so
# that shared_buffers holds the two databases of the sequential runs.
if [ -n "${MIX_CLIENTS// /}" ]; then
    say "== interleaved runs: $SECONDS_PER s each, clients: $MIX_CLIENTS"
    prewarm mixed
    for t in $TESTS; do
        case $t in
            noise) ;;
            latest50) measure_mix latest50 twin_latest_table.sql latest_view.sql target_read \
                          $(mix_clients_for latest50) ;;
            react)    measure_mix react twin_react.sql react.sql target_update \
                          $(mix_clients_for react) ;;
            insert)   measure_mix insert twin_insert.sql insert.sql target_insert \
                          $(mix_clients_for insert) ;;
            recall)   measure_mix recall twin_recall_bare.sql recall.sql target_recall \
                          $(mix_clients_for recall) ;;
            *) die "unrecognized test \"$t\" in BENCH_TESTS" ;;
        esac
    done
    check_ids mixed messages messages_twin
    q -d postgres -c "DROP DATABASE mixed"
fi

# Reads first (no rows recalled yet, nothing inserted), then the non-recall
# update, inserts, and recalls last (the default order of BENCH_TESTS).
say "== sequential runs: $SECONDS_PER s per variant and point ($NSLICES x $SLICE_LEN s), clients: $CLIENTS"
prewarm plain
prewarm enabled
for t in $TESTS; do
    case $t in
        noise)    measure noise    react.sql        react.sql       target_none plain plain ;;
        latest50) measure latest50 latest_table.sql latest_view.sql target_read ;;
        react)    measure react    react.sql        react.sql       target_update ;;
        insert)   measure insert   insert.sql       insert.sql      target_insert ;;
        recall)   measure recall   recall_bare.sql  recall.sql      target_recall ;;
        *) die "unrecognized test \"$t\" in BENCH_TESTS" ;;
    esac
done
check_ids plain messages
check_ids enabled messages

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
EVENTS=$(q -d enabled -c "SELECT count(*) FROM recall.events")
RECALLED=$(q -d enabled -c "SELECT count(*) FROM messages WHERE recalled_at IS NOT NULL")
WIPED=$(q -d enabled -c "SELECT count(*) FROM messages
                         WHERE recalled_at IS NOT NULL AND body IS NULL AND attachment IS NULL")

# --- report ------------------------------------------------------------------
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "uncommitted")
if [ "$PRELOAD" = 1 ]; then
    NOTIFY_MODE="preloaded (shared_preload_libraries = 'pg_recall')"
else
    NOTIFY_MODE="not preloaded: the notification is sent inside the recall transaction"
fi
{
    echo "pg_recall bench ($COMMIT), $PGVERSION, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "$ROWS messages, $CONVERSATIONS conversations; pgbench -M prepared -n, $NSLICES x $SLICE_LEN s per variant and point, alternating"
    echo "cluster: shared_buffers=1GB, synchronous_commit=on, fsync=$FSYNC, full_page_writes=$FSYNC, autovacuum=off, CHECKPOINT before each point"
    echo "pg_recall: $NOTIFY_MODE"
    echo "load average before measuring: $LOAD_BEFORE, after: $LOAD_AFTER (other work on the machine skews the sequential ratios)"
    echo "tps: mean over the slices; ratio: median over the slice pairs of enabled tps / plain tps;"
    echo "spread: lowest-highest ratio of one slice pair"
    echo
    printf '%-10s %7s %12s %12s %7s %11s %8s %5s\n' test clients "plain tps" "enabled tps" ratio spread target met
    printf '%s\n' "${RESULTS[@]}"
    echo
    echo "noise:    the react workload on the plain database against itself: a ratio"
    echo "          this far from 1.000 is what the machine's noise alone gives"
    echo "latest50: plain = the table with 'recalled_at IS NULL' in the database without"
    echo "          the extension; enabled = messages_visible.  View plans exactly as the"
    echo "          table query (EXPLAIN in the enabled database): $PLAN_SAME"
    echo "react:    UPDATE messages SET reactions = reactions + 1 WHERE id = <random>"
    echo "recall:   plain = UPDATE setting recalled_at, recalled_by, body = NULL,"
    echo "          attachment = NULL; enabled = UPDATE setting recalled_at only."
    echo "          enabled: $RECALLED rows recalled, $WIPED wiped, $EVENTS events"
    echo "          targets from the spec (4 clients >= 0.85, 16 >= 0.80) assume the"
    echo "          background dispatcher (BENCH_PRELOAD=1)"
    if [ ${#MIX_RESULTS[@]} -gt 0 ]; then
        echo
        echo "Interleaved (run first, in a third copy): one pgbench run per line, each transaction picks"
        echo "the enabled table or its never-enabled twin in the same database; ratio = twin mean"
        echo "latency / enabled mean latency (other load hits both alike; a cost ratio: contention"
        echo "shows in the table above only)"
        echo
        printf '%-10s %7s %11s %11s %9s %9s %7s %8s %5s\n' test clients "twin us" "enabled us" "twin tx" "enab tx" ratio target met
        printf '%s\n' "${MIX_RESULTS[@]}"
    fi
    if [ -n "${ID_WARNING:-}" ]; then
        echo
        echo "$ID_WARNING"
    fi
} | tee "$OUT"

if [ "$PLAN_SAME" != yes ]; then
    {
        echo
        echo "view plan:";  echo "$PLAN_VIEW"
        echo "table plan:"; echo "$PLAN_TABLE"
    } | tee -a "$OUT"
fi
say "== written to $OUT"

# Issue 4's figures: bare / PL/pgSQL / inline NOTIFY / dispatcher, and latency
if [ "${BENCH_DISPATCH:-1}" = 1 ]; then
    cleanup
    trap - EXIT
    BENCH_OUT=$OUT bash "$ROOT/test/bench/dispatch_bench.sh"
fi

WORK_INSTR_OUT=$(mktemp /tmp/pg_recall_instr_out.XXXXXX)

# Issue 11's figures: instructions per statement (valgrind callgrind on a
# single-user backend; deterministic, unlike the pgbench ratios above), with
# the notification sent by the recall itself and with the dispatcher.
if [ "${BENCH_INSTRUCTIONS:-1}" = 1 ]; then
    for preload in 0 1; do
        BENCH_INSTALL=0 BENCH_PRELOAD=$preload BENCH_OUT="$WORK_INSTR_OUT.$preload" \
            bash "$ROOT/test/bench/instructions.sh"
        { echo; cat "$WORK_INSTR_OUT.$preload"; } >>"$OUT"
    done
fi

# Issue 11: a recall with two registered copies against one without
if [ "${BENCH_COPIES:-1}" = 1 ]; then
    BENCH_INSTALL=0 bash "$ROOT/test/bench/copies.sh" | tee -a "$OUT"
fi

# The spec's bulk target: a non-recall UPDATE of every row, time and memory
if [ "${BENCH_BULK:-1}" = 1 ]; then
    BENCH_OUT=$OUT bash "$ROOT/test/bench/bulk_update.sh"
fi

# Issue 13: a writer beside recall.enable() on a large table.
if [ "${BENCH_ENABLE:-1}" = 1 ]; then
    BENCH_OUT=$OUT BENCH_ROWS=${BENCH_ENABLE_ROWS:-10000000} bash "$ROOT/test/bench/enable_bench.sh"
fi

# Issue 10: erasure at two table sizes (BENCH_ERASURE_SIZES)
if [ "${BENCH_ERASURE:-1}" = 1 ]; then
    BENCH_OUT=$OUT BENCH_SIZES=${BENCH_ERASURE_SIZES:-"1000000 10000000"} \
        bash "$ROOT/test/bench/erasure_bench.sh"
fi

# Issue 14: recall through a Citus coordinator (the script says it skipped
# when Citus is not installed for the server)
if [ "${BENCH_CITUS:-1}" = 1 ]; then
    BENCH_OUT=$OUT bash "$ROOT/test/bench/citus_bench.sh"
fi
