#!/usr/bin/env bash
# scripts/relay_demo.sh: the pg_recall_relay step of the demo.
#
# Called by scripts/demo.sh inside its throwaway cluster: PGHOST, PGPORT,
# PGDATABASE (and PGUSER, PGPASSWORD) point at a database where the
# messages table (id, conversation, sender, body) is enabled for recall.
# Starts the relay with --http on a free loopback port, opens an SSE stream
# on /events, makes a recall, shows the JSON line the relay printed and the
# SSE event the stream got, then stops the relay with SIGTERM (exit 0,
# state saved).  Exits non-zero if any of it does not happen.
#
# Environment:
#   PG_CONFIG         pg_config of the server (to find pg_recall_relay)
#   RELAY_DEMO_TABLE  the enabled table (default: messages)
#   RELAY_DEMO_PORT   HTTP port (default: the first free one from 8470)

set -euo pipefail

TABLE=${RELAY_DEMO_TABLE:-messages}
BINDIR=$("${PG_CONFIG:-pg_config}" --bindir 2>/dev/null || true)
RELAY=${BINDIR:+$BINDIR/}pg_recall_relay
if ! command -v "$RELAY" >/dev/null 2>&1; then
	RELAY=pg_recall_relay
fi
command -v "$RELAY" >/dev/null 2>&1 || { echo "relay_demo.sh: pg_recall_relay not found (make install)" >&2; exit 1; }
command -v curl >/dev/null 2>&1 || { echo "relay_demo.sh: curl not found" >&2; exit 1; }

TMP=$(mktemp -d -t pg_recall_relay_demo.XXXXXX)
RELAY_PID=
CURL_PID=
cleanup() {
	[ -n "$CURL_PID" ] && kill "$CURL_PID" 2>/dev/null || true
	if [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; then
		kill -TERM "$RELAY_PID" 2>/dev/null || true
		wait "$RELAY_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
	echo
	echo "RELAY DEMO FAILED: $*" >&2
	if [ -s "$TMP/relay.err" ]; then
		echo "--- relay messages:" >&2
		sed 's/^/   /' "$TMP/relay.err" >&2
	fi
	exit 1
}

# Wait up to $1 seconds for a command to succeed.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# A free loopback port: nothing answers on it.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
PORT=${RELAY_DEMO_PORT:-}
if [ -z "$PORT" ]; then
	for p in $(seq 8470 8570); do
		if port_free "$p"; then
			PORT=$p
			break
		fi
	done
	[ -n "$PORT" ] || fail "no free port between 8470 and 8570"
fi
URL=http://127.0.0.1:$PORT

psql_q() {
	psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

echo "   The relay reads recall.events_after() from its cursor (a NOTIFY only wakes"
echo "   it up), prints one JSON line per recall, saves its cursor in a state file,"
echo "   and serves the same events as Server-Sent Events:"
echo
echo "   \$ pg_recall_relay --state relay.state --http 127.0.0.1:$PORT > recalls.jsonl"
"$RELAY" --state "$TMP/relay.state" --http "127.0.0.1:$PORT" \
	>"$TMP/recalls.jsonl" 2>"$TMP/relay.err" </dev/null &
RELAY_PID=$!

health() {
	curl -sf "$URL/healthz" >"$TMP/health.json" 2>/dev/null
}
wait_for 15 health || fail "the relay did not come up on $URL"
echo "   \$ curl $URL/healthz"
sed 's/^/   /' "$TMP/health.json"

# a fresh message, in a conversation of its own, recalled by its sender
CONV=4242
ID=$(psql_q -c "INSERT INTO $TABLE (id, conversation, sender, body)
                SELECT COALESCE(max(id), 0) + 1, $CONV, 'relay-demo', 'see you at 6?'
                FROM $TABLE RETURNING id") || fail "could not insert a message into $TABLE"

echo
echo "   A browser (or curl) subscribes to conversation $CONV:"
echo "   \$ curl -N '$URL/events?conversation=$CONV'"
curl -sN "$URL/events?conversation=$CONV" >"$TMP/sse.txt" 2>/dev/null &
CURL_PID=$!
stream_open() {
	grep -q '^: pg_recall_relay' "$TMP/sse.txt"
}
wait_for 10 stream_open || fail "the SSE stream did not open"

echo
echo "   relay-demo recalls message $ID:"
echo "   BEGIN; SET LOCAL recall.actor = 'relay-demo'; SELECT recall.recall('$TABLE', $ID); COMMIT;"
psql_q -c "BEGIN; SET LOCAL recall.actor = 'relay-demo'; SELECT recall.recall('$TABLE', $ID); COMMIT;" >/dev/null ||
	fail "the recall failed"

line_printed() {
	grep -q "\"pk\":{\"id\": $ID}" "$TMP/recalls.jsonl"
}
wait_for 10 line_printed || fail "the relay did not print the recall"
echo
echo "   The JSON line on the relay's stdout (no content, no reason):"
grep "\"pk\":{\"id\": $ID}" "$TMP/recalls.jsonl" | sed 's/^/   /'

sse_event() {
	grep -q "^data: .*\"pk\":{\"id\": $ID}" "$TMP/sse.txt"
}
wait_for 10 sse_event || fail "the SSE client did not get the recall"
kill "$CURL_PID" 2>/dev/null || true
wait "$CURL_PID" 2>/dev/null || true
CURL_PID=
echo
echo "   The SSE event the subscriber got (id: is the cursor; EventSource resumes"
echo "   from it with Last-Event-ID after a disconnection):"
awk '/^id: /{buf=$0; next} /^event: /{buf=buf "\n" $0; next}
     /^data: /{print buf "\n" $0; exit}' "$TMP/sse.txt" | sed 's/^/   /'

echo
echo "   The relay also serves a demo page at $URL/ : a live list of recalled ids"
echo "   per conversation (EventSource)."
echo
echo "   SIGTERM: the relay finishes its batch, saves its cursor, exits 0:"
kill -TERM "$RELAY_PID"
rc=0
wait "$RELAY_PID" || rc=$?
RELAY_PID=
[ "$rc" -eq 0 ] || fail "the relay exited with status $rc on SIGTERM"
echo "   exit status $rc; relay.state holds $(cat "$TMP/relay.state")"
echo
echo "   The relay's log:"
sed 's/^/   /' "$TMP/relay.err"
