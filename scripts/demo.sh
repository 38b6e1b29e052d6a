#!/usr/bin/env bash
# scripts/demo.sh: a guided tour of pg_recall on a throwaway cluster.
#
# Called by `make demo` (after scripts/setup.sh).  Builds and installs the
# extension, starts a throwaway cluster with pg_virtualenv (dropped at the
# end, whatever happens), and walks through the main job: a messages table,
# recall.enable, a listener, a sender recalling their own message, another
# user refused, a moderator's recall landing in the audit log.  Every step
# is checked: the demo exits non-zero if anything behaves otherwise.
#
# Environment: PG_CONFIG, the pg_config of the server to use (default:
# PostgreSQL 15's).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

# ---------------------------------------------------------------------------
# Outside the cluster: build, install, then run this script again inside a
# throwaway cluster.
if [ "${1:-}" != "--inside" ]; then
	if [ -z "${PG_CONFIG:-}" ]; then
		if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
			PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
		else
			PG_CONFIG=pg_config
		fi
	fi
	export PG_CONFIG
	PGVER=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
	SUDO=
	[ "$(id -u)" -ne 0 ] && SUDO=sudo

	echo "== building and installing pg_recall (PostgreSQL $PGVER)"
	make --no-print-directory -s PG_CONFIG="$PG_CONFIG"
	$SUDO make --no-print-directory -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	echo "== starting a throwaway cluster (pg_virtualenv); it is dropped at the end"
	pg_virtualenv -t -v "$PGVER" -- bash "$ROOT/scripts/demo.sh" --inside
	exit $?
fi

# ---------------------------------------------------------------------------
# Inside pg_virtualenv: PGHOST, PGPORT, PGUSER (a superuser) and PGPASSWORD
# point at the throwaway cluster.

TMP=$(mktemp -d -t pg_recall_demo.XXXXXX)
LISTENER_PID=
cleanup() {
	if [ -n "$LISTENER_PID" ]; then
		exec 7>&- 2>/dev/null || true
		kill "$LISTENER_PID" 2>/dev/null || true
		wait "$LISTENER_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

STEP=0
# A section header, then the explanation lines given as arguments.
step() {
	STEP=$((STEP + 1))
	echo
	echo "────────────────────────────────────────────────────────────────────────"
	echo " $STEP. $1"
	echo "────────────────────────────────────────────────────────────────────────"
	shift
	local line
	for line in "$@"; do
		echo "   $line"
	done
	echo
}

fail() {
	echo
	echo "DEMO FAILED: $*" >&2
	exit 1
}

# Run SQL from stdin, echoing each statement before its result.
sql() {
	psql -X -q -e -v ON_ERROR_STOP=1 -f - || fail "a statement failed (see above)"
}

# Run SQL from stdin whose last statement must fail with SQLSTATE $1; show
# the error as psql prints it (with its SQLSTATE, without the C source
# location and context).
sql_refused() {
	local want=$1 out rc
	set +e
	out=$(psql -X -q -e -v ON_ERROR_STOP=1 -v VERBOSITY=verbose \
		-v SHOW_CONTEXT=never -f - 2>&1)
	rc=$?
	set -e
	out=$(printf '%s\n' "$out" | grep -v '^LOCATION:' | sed -E 's/^psql:[^:]*:[0-9]+: //')
	printf '%s\n' "$out"
	[ "$rc" -eq 3 ] || fail "expected an error (SQLSTATE $want), psql exited with $rc"
	printf '%s\n' "$out" | grep -q "^ERROR:  $want:" ||
		fail "expected SQLSTATE $want"
}

# Check that a query returns true.
check() {
	local what=$1 query=$2 got
	got=$(psql -X -A -t -q -c "$query" 2>&1) || fail "$what: $got"
	[ "$got" = "t" ] || fail "$what (query returned: $got)"
	echo "   [ok] $what"
}

# The listener: a psql session reading commands from a FIFO that stays open.
# psql prints the notifications it has received after each command it runs,
# so poll_listener sends it a command that prints nothing else.
start_listener() {
	mkfifo "$TMP/listener.in"
	psql -X -q <"$TMP/listener.in" >"$TMP/listener.out" 2>&1 &
	LISTENER_PID=$!
	exec 7>"$TMP/listener.in"
	echo 'LISTEN recall;' >&7
	# psql runs its commands in order: once this line is printed, it listens
	echo '\echo listening' >&7
	local i
	for i in $(seq 1 50); do
		grep -q '^listening$' "$TMP/listener.out" && return 0
		sleep 0.2
	done
	sed 's/^/     | /' "$TMP/listener.out"
	fail "the listener did not start"
}

LISTENER_SEEN=0
# Show the notifications that arrived since the last call; wait for at least
# $1 new ones (up to 10 seconds).
poll_listener() {
	local want=$1 i n
	for i in $(seq 1 50); do
		echo 'SELECT 1 \g /dev/null' >&7
		sleep 0.2
		n=$(grep -c '^Asynchronous notification' "$TMP/listener.out" || true)
		[ "$n" -ge $((LISTENER_SEEN + want)) ] && break
	done
	echo "   the listener printed:"
	{ grep '^Asynchronous notification' "$TMP/listener.out" || true; } |
		tail -n +$((LISTENER_SEEN + 1)) | sed 's/^/     /'
	if [ "$n" -lt $((LISTENER_SEEN + want)) ]; then
		echo "   listener output:"
		sed 's/^/     | /' "$TMP/listener.out"
		fail "the listener got $((n - LISTENER_SEEN)) notification(s), expected $want"
	fi
	LISTENER_SEEN=$n
}

echo
echo "pg_recall demo: PostgreSQL $(psql -X -A -t -c 'SHOW server_version'), port $PGPORT"

# ---------------------------------------------------------------------------
step "A chat application's messages table" \
	"Alice and Bob chat in conversation 7.  The application connects as the" \
	"role app (a pooled role: in each transaction it says which end user acts" \
	"with SET LOCAL recall.actor)."
sql <<'SQL'
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint,
    sender       text,
    sent_at      timestamptz DEFAULT now(),
    body         text
);
INSERT INTO messages (id, conversation, sender, body) VALUES
    (1, 7, 'alice', 'my new phone number is 555-0142'),
    (2, 7, 'alice', 'see you at 6?'),
    (3, 7, 'bob',   'CHEAP PILLS at spam.example'),
    (4, 7, 'bob',   'sure, see you then');
CREATE ROLE app NOLOGIN;
GRANT SELECT, INSERT, UPDATE ON messages TO app;
SELECT id, sender, body FROM messages ORDER BY id;
SQL

# ---------------------------------------------------------------------------
step "Install the extension" \
	"CREATE EXTENSION makes the schema recall and two roles: recall_admin" \
	"(may recall anyone's message, with a reason) and recall_auditor (may read" \
	"the audit log).  A moderator role joins recall_admin."
sql <<'SQL'
CREATE EXTENSION pg_recall;
SELECT rolname FROM pg_roles WHERE rolname LIKE 'recall\_%' ORDER BY 1;
CREATE ROLE moderator NOLOGIN IN ROLE recall_admin, app;
SQL

# ---------------------------------------------------------------------------
step "Enable recall on the table" \
	"content lists the columns that carry the message's text; sender and" \
	"sent_at let a sender recall their own message within recall_window." \
	"enable adds recalled_at, recalled_by and recall_reason, one C trigger" \
	"(~recall_guard, firing always: it recalls and holds the invariant)," \
	"and the view messages_visible."
sql <<'SQL'
SELECT recall.enable('messages',
                     content       => '{body}',
                     sender        => 'sender',
                     sent_at       => 'sent_at',
                     conversation  => 'conversation',
                     recall_window => '15 minutes');
\d messages
SQL
check "the view messages_visible exists" \
	"SELECT to_regclass('messages_visible') IS NOT NULL"
check "app may read the view (SELECT grants are copied to it)" \
	"SELECT has_table_privilege('app', 'messages_visible', 'SELECT')"

# ---------------------------------------------------------------------------
step "A listener" \
	"A push service keeps a session with LISTEN recall.  pg_recall notifies" \
	"the channel in the recall's own transaction, delivered when it commits."
start_listener
echo "   started: psql session $LISTENER_PID, LISTEN recall"

# ---------------------------------------------------------------------------
step "Alice recalls her own message" \
	"The statement names no one else: the actor comes from recall.actor, set" \
	"with SET LOCAL for this transaction only, and" \
	"alice is the sender of message 1, sent less than 15 minutes ago."
sql <<'SQL'
BEGIN;
SET LOCAL ROLE app;
SET LOCAL recall.actor = 'alice';
SELECT recall.recall('messages', 1);
COMMIT;
SQL

echo
echo "   The row is wiped in the same statement: the text is gone, not hidden."
sql <<'SQL'
SELECT id, sender, body, recalled_at IS NOT NULL AS recalled, recalled_by
FROM messages ORDER BY id;
SQL
echo "   The view, what the application reads, no longer shows it:"
sql <<'SQL'
SELECT id, sender, body FROM messages_visible ORDER BY id;
SQL
check "message 1's body is wiped (NULL)" \
	"SELECT body IS NULL FROM messages WHERE id = 1"
check "recalled_by is alice" \
	"SELECT recalled_by = 'alice' AND recalled_at IS NOT NULL FROM messages WHERE id = 1"
check "messages_visible hides message 1" \
	"SELECT NOT EXISTS (SELECT FROM messages_visible WHERE id = 1)"
echo
poll_listener 1

# ---------------------------------------------------------------------------
step "Bob tries to recall Alice's message" \
	"Refused with SQLSTATE 42501, by recall.recall and by a plain UPDATE alike:" \
	"the rule is in the table's trigger, not in one API endpoint."
sql_refused 42501 <<'SQL'
BEGIN;
SET LOCAL ROLE app;
SET LOCAL recall.actor = 'bob';
SELECT recall.recall('messages', 2);
SQL
echo
sql_refused 42501 <<'SQL'
BEGIN;
SET LOCAL ROLE app;
SET LOCAL recall.actor = 'bob';
UPDATE messages SET recalled_at = now() WHERE id = 2;
SQL
check "message 2 is untouched" \
	"SELECT body = 'see you at 6?' AND recalled_at IS NULL FROM messages WHERE id = 2"

# ---------------------------------------------------------------------------
step "A session-level SET is not trusted" \
	"Behind a transaction pooler (pgbouncer), a plain SET stays on the server" \
	"connection after its client has gone, and the next client would recall as" \
	"that user.  Under recall.actor_scope = 'transaction' (the default), a" \
	"recall.actor set in an earlier transaction is refused, even alice's own."
sql_refused 42501 <<'SQL'
SET ROLE app;
SET recall.actor = 'alice';
SELECT recall.recall('messages', 2);
SQL
check "message 2 is still untouched" \
	"SELECT body = 'see you at 6?' AND recalled_at IS NULL FROM messages WHERE id = 2"

# ---------------------------------------------------------------------------
step "A recalled message stays recalled" \
	"Putting text back into a recalled row is refused (SQLSTATE 55000)."
sql_refused 55000 <<'SQL'
BEGIN;
SET LOCAL ROLE app;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET body = 'my new phone number is 555-0142' WHERE id = 1;
SQL
check "message 1 is still wiped" \
	"SELECT body IS NULL FROM messages WHERE id = 1"

# ---------------------------------------------------------------------------
step "A moderator removes Bob's spam" \
	"moderator is a member of recall_admin: it may recall any message, but" \
	"only with a reason.  Without one it is refused; with one it is audited."
sql_refused 42501 <<'SQL'
BEGIN;
SET LOCAL ROLE moderator;
SET LOCAL recall.actor = 'carol';
SELECT recall.recall('messages', 3);
SQL
echo
sql <<'SQL'
BEGIN;
SET LOCAL ROLE moderator;
SET LOCAL recall.actor = 'carol';
SELECT recall.recall('messages', 3, reason => 'spam');
COMMIT;
SELECT id, sender, body, recalled_by, recall_reason FROM messages ORDER BY id;
SQL
check "message 3 is wiped and recalled by carol for spam" \
	"SELECT body IS NULL AND recalled_by = 'carol' AND recall_reason = 'spam' FROM messages WHERE id = 3"
echo
poll_listener 1

# ---------------------------------------------------------------------------
step "The audit log" \
	"Every recall made with admin power is in recall.audit (never the text)." \
	"Only recall_auditor (and superusers) may read it: not the application."
sql <<'SQL'
SELECT * FROM recall.audit;
SQL
check "one audit row: carol, as moderator, for spam" \
	"SELECT count(*) = 1 AND bool_and(actor = 'carol' AND db_role = 'moderator' AND reason = 'spam' AND pk = '{\"id\": 3}') FROM recall.audit"
echo
sql_refused 42501 <<'SQL'
SET ROLE app;
SELECT * FROM recall.audit;
SQL

# ---------------------------------------------------------------------------
step "The event log" \
	"recall.events has one row per recalled message, for consumers that must" \
	"not miss one (NOTIFY is not durable).  It never holds the text either."
sql <<'SQL'
SELECT seq, tbl, pk, conversation, actor, privileged FROM recall.events ORDER BY seq;
SQL
check "two events: alice's own recall, carol's privileged one" \
	"SELECT array_agg(actor || ':' || privileged ORDER BY seq) = '{alice:false,carol:true}' FROM recall.events"

# ---------------------------------------------------------------------------
step "What the listener received" \
	"One JSON payload per recalling statement: table, key, conversation and" \
	"event number, never the text or the reason."
echo 'SELECT 1 \g /dev/null' >&7
sleep 0.3
grep '^Asynchronous notification' "$TMP/listener.out" | sed 's/^/   /'
n=$(grep -c '^Asynchronous notification "recall" with payload "{.*\"op\":\"recall\"' "$TMP/listener.out" || true)
[ "$n" -eq 2 ] || fail "expected 2 recall notifications, the listener got $n"
if grep -q -e '555-0142' -e 'PILLS' -e 'spam"' "$TMP/listener.out"; then
	fail "a notification carried message text or a reason"
fi
echo "   [ok] 2 notifications, no text in them"
echo '\q' >&7
exec 7>&-
wait "$LISTENER_PID" || true
LISTENER_PID=

# ---------------------------------------------------------------------------
step "The relay" \
	"pg_recall_relay follows the event log for services: it prints each recall" \
	"as a JSON line and serves it as Server-Sent Events (a browser's EventSource" \
	"resumes by itself after a disconnect).  A new recall arrives both ways."
bash "$ROOT/scripts/relay_demo.sh" || fail "the relay step failed"

echo
echo "────────────────────────────────────────────────────────────────────────"
echo " Demo complete: every step behaved as described.  The throwaway cluster"
echo " is dropped now."
echo "────────────────────────────────────────────────────────────────────────"
