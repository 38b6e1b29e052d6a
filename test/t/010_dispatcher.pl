# Copyright (c) pg_recall authors
#
# 010_dispatcher.pl
#	  The background notification dispatcher (pg_recall in
#	  shared_preload_libraries).  A listener gets every committed recall's
#	  notification after commit, in the spec's payload forms (single, bulk
#	  for a statement that recalled several, bulk fallback for a payload
#	  that would not fit), sent by the dispatcher and not by the recall
#	  transaction, which can therefore be PREPAREd: notified after COMMIT
#	  PREPARED, never after ROLLBACK PREPARED, and a prepared transaction
#	  does not hold back the notifications of later ones.  Woken at commit:
#	  with a poll interval of an hour notifications still arrive (and DROP
#	  DATABASE still succeeds).  With a batch size smaller than a statement,
#	  every event is still notified once, in one notification per
#	  statement.  Across a
#	  dispatcher terminated, a dispatcher killed with SIGKILL (the
#	  postmaster restarts the cluster) and a clean restart, the events
#	  committed while no dispatcher could send are all notified, and none
#	  twice (exactly once to a connected listener).  Each database with the
#	  extension has its own dispatcher and notifications; DROP EXTENSION
#	  then CREATE EXTENSION works while the dispatcher runs, and DROP
#	  DATABASE of a database with a running dispatcher succeeds.
#
#	  To hold notifications back deterministically ("committed meanwhile"),
#	  the test puts a gate on the dispatcher's own bookkeeping: a trigger on
#	  recall.dispatch_state that fails while public.dispatch_gate is closed
#	  (and waits on an advisory lock the test may hold).  The dispatcher
#	  advances recall.dispatch_state in the transaction that sends its
#	  NOTIFYs, so a closed gate aborts that transaction and nothing is sent.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Bound of every wait, in seconds.
my $WAIT = 30;

my $node = PostgreSQL::Test::Cluster->new('dispatcher');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
max_prepared_transactions = 5
restart_after_crash = on
# dispatchers that stay (this test follows one dispatcher's pid; idle exit
# and the budget are 012's), and room for every database's workers
recall.worker_idle_timeout = '1h'
recall.max_workers = 6
});
$node->start;

# ---------------------------------------------------------------------------
# helpers

# Poll a query until it returns $expected (default 't'), at most $WAIT s.
sub wait_until
{
	my ($db, $query, $expected, $secs) = @_;
	$expected = 't' unless defined $expected;
	my $deadline = time + ($secs // $WAIT);
	my $out      = '';
	while (time < $deadline)
	{
		my ($rc, $stdout, $stderr) =
		  $node->psql($db, $query, timeout => $WAIT);
		$out = $stdout // '';
		return 1 if defined $rc && $rc == 0 && $out eq $expected;
		usleep(100_000);
	}
	diag "timed out: $query\nexpected: $expected\nlast output: $out";
	return 0;
}

# The pid of a database's dispatcher ('' when none).
sub dispatcher_pid
{
	my ($db) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',') FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_recall dispatcher' AND datname = '$db'");
}

# Wait until a database has exactly one dispatcher; return its pid.
sub wait_dispatcher
{
	my ($db) = @_;
	wait_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_recall dispatcher' AND datname = '$db'")
	  or return '';
	return dispatcher_pid($db);
}

# A listener: a background psql that LISTENs on some channels and collects
# the notifications psql prints after each command.
sub new_listener
{
	my ($db, @channels) = @_;
	my $l = {
		db   => $db,
		psql => $node->background_psql($db, timeout => $WAIT),
		got  => []
	};
	# the time limit applies to each command, not to the session
	$l->{psql}->set_query_timer_restart;
	$l->{psql}->query_safe("LISTEN $_") for @channels;
	return $l;
}

# Read the notifications that arrived since the last call.
sub pump
{
	my ($l) = @_;
	my $out = $l->{psql}->query('SELECT 1');
	while ($out =~
		/^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.\r?$/mg
	  )
	{
		my ($channel, $raw, $pid) = ($1, $2, $3);
		my $payload = eval { decode_json($raw) };
		push @{ $l->{got} },
		  {
			channel => $channel,
			raw     => $raw,
			payload => $payload,
			pid     => $pid
		  };
	}
	return scalar @{ $l->{got} };
}

# Wait until a listener holds at least $n notifications in all.
sub wait_count
{
	my ($l, $n) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return 1 if pump($l) >= $n;
		usleep(50_000);
	}
	diag "timed out waiting for $n notifications, got "
	  . scalar(@{ $l->{got} });
	return 0;
}

# Wait $secs, collecting; return the number of notifications that came.
sub quiet_for
{
	my ($l, $secs) = @_;
	my $before   = scalar @{ $l->{got} };
	my $deadline = time + $secs;
	while (time < $deadline)
	{
		pump($l);
		usleep(100_000);
	}
	return scalar(@{ $l->{got} }) - $before;
}

sub quit_listener
{
	my ($l) = @_;
	eval { $l->{psql}->quit; };
}

# A notification as a line: channel, form, and what identifies its events.
sub describe
{
	my ($n) = @_;
	my $p = $n->{payload};
	return "$n->{channel}: unparsable payload $n->{raw}" unless ref $p;
	if (($p->{op} // '') eq 'recall')
	{
		return sprintf('%s: recall %s pk=%s seq=%s',
			$n->{channel}, $p->{table}, encode_json($p->{pk}), $p->{seq});
	}
	if (($p->{op} // '') eq 'recall_bulk')
	{
		return sprintf('%s: recall_bulk %s count=%s seqs=%s..%s',
			$n->{channel}, $p->{table}, $p->{count}, $p->{first_seq},
			$p->{last_seq});
	}
	return "$n->{channel}: unknown payload $n->{raw}";
}

# The lines a listener has collected from index $from on.
sub described
{
	my ($l, $from) = @_;
	my @got = @{ $l->{got} };
	return [ map { describe($_) } @got[ $from .. $#got ] ];
}

# The expected line of one recalled message (its event read from the log).
sub expect_single
{
	my ($db, $channel, $tbl, $key) = @_;
	my $seq = $node->safe_psql($db,
		"SELECT seq FROM recall.events WHERE tbl = '$tbl'::regclass"
		  . " AND pk->>'id' = '$key'");
	my $pk = $node->safe_psql($db,
		"SELECT jsonb_build_object('id', $key)::text");
	# the payload's key is compact JSON, as encode_json writes it
	$pk = encode_json(decode_json($pk));
	return "$channel: recall public.$tbl pk=$pk seq=$seq";
}

# The expected line of a statement that recalled several messages.
sub expect_bulk
{
	my ($db, $channel, $tbl, @keys) = @_;
	my $list = join(',', @keys);
	my ($count, $first, $last) = split /\|/,
	  $node->safe_psql($db,
		"SELECT count(*), min(seq), max(seq) FROM recall.events"
		  . " WHERE tbl = '$tbl'::regclass AND (pk->>'id')::bigint IN ($list)"
	  );
	return "$channel: recall_bulk public.$tbl count=$count seqs=$first..$last";
}

# The seq of a message's event.
sub seq_of
{
	my ($db, $tbl, $key) = @_;
	return $node->safe_psql($db,
		"SELECT seq FROM recall.events WHERE tbl = '$tbl'::regclass AND pk->>'id' = '$key'"
	);
}

# The seqs a listener's notifications from index $from on cover, sorted,
# once per notification that covers them (a bulk notification covers the
# events of its table from first_seq to last_seq, of the transaction and
# statement of first_seq; the count must match).
sub covered
{
	my ($l, $from, $tbl) = @_;
	my @got = @{ $l->{got} };
	my @seqs;
	for my $n (@got[ $from .. $#got ])
	{
		my $p = $n->{payload};
		next unless ref $p;
		if ($p->{op} eq 'recall')
		{
			push @seqs, $p->{seq};
			next;
		}
		my @in = split /\n/,
		  $node->safe_psql(
			$l->{db}, qq{
SELECT e.seq FROM recall.events e JOIN recall.events f ON f.seq = $p->{first_seq}
WHERE e.tbl = '$tbl'::regclass AND e.xid = f.xid AND e.dispatch_group = f.dispatch_group
  AND e.seq BETWEEN $p->{first_seq} AND $p->{last_seq}});
		push @seqs, @in;
		push @seqs, "bad count in $n->{raw}" if scalar(@in) != $p->{count};
	}
	return [ sort { $a <=> $b } @seqs ];
}

# Wait until a listener's notifications from $from on cover the events of
# some messages.
sub wait_for_seqs
{
	my ($l, $from, $tbl, @keys) = @_;
	my %want = map { seq_of($l->{db}, $tbl, $_) => 1 } @keys;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		pump($l);
		my %have = map { $_ => 1 } @{ covered($l, $from, $tbl) };
		return 1 unless grep { !$have{$_} } keys %want;
		usleep(100_000);
	}
	diag 'timed out waiting for the events of ' . join(',', @keys);
	return 0;
}

# Recall messages of "messages" as alice, one statement per argument: a
# number recalls that message with recall.recall(), an array reference
# recalls its messages with one UPDATE.  The statements name their actor,
# so they work inside the caller's transaction blocks and outside them.
sub recall_sql
{
	my @sql;
	for my $what (@_)
	{
		if (ref $what)
		{
			push @sql,
			  "UPDATE messages SET recalled_at = now(), recalled_by = 'alice' WHERE id IN ("
			  . join(',', @$what) . ");";
		}
		else
		{
			push @sql, "SELECT recall.recall('messages', ${what}::bigint, 'alice');";
		}
	}
	return join("\n", @sql);
}

my $schema = q{
CREATE EXTENSION pg_recall;
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint,
    sender       text,
    sent_at      timestamptz DEFAULT now(),
    body         text
);
INSERT INTO messages (id, conversation, sender, body)
SELECT i, i % 3, 'alice', 'secret text ' || i FROM generate_series(1, 300) AS i;
SELECT recall.enable('messages', '{body}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation');
};

# ---------------------------------------------------------------------------
# workers

$node->safe_psql('postgres', $schema);
$node->safe_psql(
	'postgres', q{
CREATE TABLE longkeys (id text PRIMARY KEY, sender text, body text);
INSERT INTO longkeys VALUES (repeat('k', 9000), 'alice', 'big secret'),
                            ('short', 'alice', 'small secret');
SELECT recall.enable('longkeys', '{body}', sender => 'sender', channel => 'recall_long');
});

is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_recall launcher'"
	),
	'1',
	'one launcher in pg_stat_activity, backend_type "pg_recall launcher"');
my $dpid = wait_dispatcher('postgres');
ok($dpid =~ /^\d+$/,
	'a dispatcher for the database in pg_stat_activity, backend_type "pg_recall dispatcher"'
);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_recall dispatcher'"
	),
	'1',
	'no dispatcher for databases without the extension');

# ---------------------------------------------------------------------------
# payloads

my $l = new_listener('postgres', 'recall', 'recall_long');

# single: sent after commit, not before, and by the dispatcher
my $w = $node->background_psql('postgres', timeout => $WAIT);
$w->set_query_timer_restart;
$w->query_safe("BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', 1::bigint);");
is(quiet_for($l, 2.5), 0, 'no notification before the recall commits');
$w->query_safe('COMMIT');
ok(wait_count($l, 1), 'notification after commit');
is_deeply(described($l, 0),
	[ expect_single('postgres', 'recall', 'messages', 1) ],
	'single payload');
{
	my $n = $l->{got}[0];
	my $p = $n->{payload};
	is_deeply([ sort keys %$p ],
		[qw(at conversation op pk seq table v)],
		'single payload has exactly v, op, table, pk, conversation, seq, at');
	is($p->{v},            1,   'payload version 1');
	is($p->{conversation}, '1', 'payload conversation as text');
	is( $node->safe_psql(
			'postgres',
			"SELECT recalled_at = '$p->{at}'::timestamptz FROM recall.events WHERE seq = $p->{seq}"
		),
		't',
		'payload "at" is the recall time');
	is($n->{pid}, $dpid, 'sent by the dispatcher, not by the recall transaction');
	is( $node->safe_psql(
			'postgres',
			"SELECT dispatch_group IS NOT NULL FROM recall.events WHERE seq = $p->{seq}"
		),
		't',
		'the event is left to the dispatcher (dispatch_group set)');
}

# bulk: one UPDATE of three rows; then two statements in one transaction,
# one notification each
my $mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', recall_sql([ 2, 3, 4 ]));
$node->safe_psql('postgres', "BEGIN;\n" . recall_sql(5, [ 6, 7 ]) . "\nCOMMIT;");
ok(wait_count($l, $mark + 3), 'bulk notifications arrive');
is_deeply(
	described($l, $mark),
	[
		expect_bulk('postgres', 'recall', 'messages', 2, 3, 4),
		expect_single('postgres', 'recall', 'messages', 5),
		expect_bulk('postgres', 'recall', 'messages', 6, 7),
	],
	'one notification per statement: bulk for several messages');
is_deeply(
	[ sort keys %{ $l->{got}[$mark]{payload} } ],
	[qw(count first_seq last_seq op table v)],
	'bulk payload has exactly v, op, table, count, first_seq, last_seq');

# oversize: a 9000-character key cannot fit in a notification: bulk form,
# on the table's own channel; a short key of the same table stays single
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('longkeys', repeat('k', 9000)); COMMIT;"
);
$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('longkeys', 'short'::text); COMMIT;");
ok(wait_count($l, $mark + 2), 'oversize notifications arrive');
{
	my ($bigseq, $shortseq) = split /\n/,
	  $node->safe_psql('postgres',
		"SELECT seq FROM recall.events WHERE tbl = 'longkeys'::regclass ORDER BY seq"
	  );
	is_deeply(
		described($l, $mark),
		[
			"recall_long: recall_bulk public.longkeys count=1 seqs=$bigseq..$bigseq",
			"recall_long: recall public.longkeys pk={\"id\":\"short\"} seq=$shortseq",
		],
		'a payload that would not fit falls back to the bulk form');
}
ok(!(grep { length($_->{raw}) >= 8000 } @{ $l->{got} }),
	'every payload is shorter than 8000 bytes');
ok(!(grep { $_->{raw} =~ /secret/ } @{ $l->{got} }),
	'no payload carries content');

# ---------------------------------------------------------------------------
# two-phase commit

$mark = scalar @{ $l->{got} };
my $prep = $node->psql('postgres',
	"BEGIN;\n" . recall_sql(10) . "\nPREPARE TRANSACTION 'p_commit';");
is($prep, 0, 'a recall transaction can be prepared');
$prep = $node->psql('postgres',
	"BEGIN;\n" . recall_sql(11) . "\nPREPARE TRANSACTION 'p_rollback';");
is($prep, 0, 'a second one too');
# a later recall is not held back by the prepared transactions' xmin
$node->safe_psql('postgres', recall_sql(12));
ok(wait_count($l, $mark + 1), 'a recall committed after them is notified');
is_deeply(described($l, $mark),
	[ expect_single('postgres', 'recall', 'messages', 12) ],
	'... and only it: nothing for the prepared recalls');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'p_rollback'");
$node->safe_psql('postgres', "COMMIT PREPARED 'p_commit'");
ok(wait_count($l, $mark + 2), 'notification after COMMIT PREPARED');
$node->safe_psql('postgres', recall_sql(13));    # a marker
ok(wait_count($l, $mark + 3), 'marker notified');
is(quiet_for($l, 1.5), 0, 'nothing more comes');
is_deeply(
	described($l, $mark),
	[
		expect_single('postgres', 'recall', 'messages', 12),
		expect_single('postgres', 'recall', 'messages', 10),
		expect_single('postgres', 'recall', 'messages', 13),
	],
	'COMMIT PREPARED notified once, ROLLBACK PREPARED never, no repeat');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM recall.events WHERE pk = '{\"id\": 11}'"),
	'0',
	'the rolled back prepared recall left no event');

# ---------------------------------------------------------------------------
# woken at commit: with a poll interval of an hour (and automatic purging,
# which also wakes the dispatcher every second, off), notifications still
# come, after a plain commit and after COMMIT PREPARED

$node->safe_psql('postgres',
	"ALTER SYSTEM SET recall.dispatch_interval = '1h';"
	  . " ALTER SYSTEM SET recall.purge_delay = 0; SELECT pg_reload_conf();");
# the reload sets the dispatcher's latch; give it time to read the file
sleep 2;
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', recall_sql(20));
ok(wait_count($l, $mark + 1), 'a commit wakes the dispatcher');
$node->safe_psql('postgres',
	"BEGIN;\n" . recall_sql([ 21, 22 ]) . "\nPREPARE TRANSACTION 'p_wake';");
is(quiet_for($l, 1), 0, 'nothing for a prepared recall');
$node->safe_psql('postgres', "COMMIT PREPARED 'p_wake'");
ok(wait_count($l, $mark + 2), 'COMMIT PREPARED wakes the dispatcher');
is_deeply(
	described($l, $mark),
	[
		expect_single('postgres', 'recall', 'messages', 20),
		expect_bulk('postgres', 'recall', 'messages', 21, 22),
	],
	'woken dispatcher sends the right payloads');

# DROP DATABASE must not depend on the poll interval: the dispatcher of the
# database has to step aside within the 5 s DROP DATABASE waits for other
# sessions to leave
$node->safe_psql('postgres', 'CREATE DATABASE db_slow');
$node->safe_psql('db_slow', $schema);
ok(wait_dispatcher('db_slow') =~ /^\d+$/, 'db_slow has a dispatcher');
# ... that has done its first batch and sleeps
ok( wait_until(
		'postgres',
		"SELECT wait_event_type = 'Extension' FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_recall dispatcher' AND datname = 'db_slow'"),
	'the dispatcher of db_slow sleeps');
sleep 1;
{
	my ($rc, $out, $err) =
	  $node->psql('postgres', 'DROP DATABASE db_slow', timeout => $WAIT);
	is($rc, 0,
		'DROP DATABASE of a database with a running dispatcher succeeds with recall.dispatch_interval = 1h'
	) or diag $err;
}

$node->safe_psql('postgres',
	"ALTER SYSTEM RESET recall.dispatch_interval;"
	  . " ALTER SYSTEM RESET recall.purge_delay; SELECT pg_reload_conf();");
sleep 1;
# clean up if the drop above failed
$node->psql('postgres', 'DROP DATABASE IF EXISTS db_slow', timeout => $WAIT);

# ---------------------------------------------------------------------------
# a batch size smaller than a statement: every event is still notified
# once, and a statement still gets one notification; a prepared
# transaction holding the xmin back meanwhile does not hold the others

$node->safe_psql('postgres',
	"ALTER SYSTEM SET recall.dispatch_batch_size = 2; SELECT pg_reload_conf();");
sleep 2;
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres',
	"BEGIN;\n" . recall_sql(90) . "\nPREPARE TRANSACTION 'p_batch';");
$node->safe_psql('postgres', recall_sql([ 91, 92, 93, 94, 95 ], 96));
$node->safe_psql('postgres', recall_sql(97));
$node->safe_psql('postgres', "COMMIT PREPARED 'p_batch'");
$node->safe_psql('postgres', recall_sql(98));
ok(wait_for_seqs($l, $mark, 'messages', 90 .. 98),
	'small batches: every event notified');
is(quiet_for($l, 1.5), 0, 'nothing more comes');
is_deeply(covered($l, $mark, 'messages'), [ map { seq_of('postgres', 'messages', $_) } 90 .. 98 ],
	'small batches: every event notified exactly once');
is_deeply(
	[ sort @{ described($l, $mark) } ],
	[
		sort(expect_bulk('postgres', 'recall', 'messages', 91 .. 95),
			expect_single('postgres', 'recall', 'messages', 96),
			expect_single('postgres', 'recall', 'messages', 97),
			expect_single('postgres', 'recall', 'messages', 90),
			expect_single('postgres', 'recall', 'messages', 98))
	],
	'small batches: one notification per statement');
$node->safe_psql('postgres',
	"ALTER SYSTEM RESET recall.dispatch_batch_size; SELECT pg_reload_conf();");
sleep 1;

# ---------------------------------------------------------------------------
# a dispatcher terminated: the launcher starts another one, which sends
# what was committed meanwhile, once

$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', "SELECT pg_terminate_backend($dpid)");
$node->safe_psql('postgres', recall_sql(30));
$node->safe_psql('postgres', recall_sql([ 31, 32 ]));
ok(wait_count($l, $mark + 2), 'notified after the dispatcher was terminated');
$node->safe_psql('postgres', recall_sql(33));
ok(wait_count($l, $mark + 3), 'marker notified');
is(quiet_for($l, 1.5), 0, 'nothing more comes');
is_deeply(
	described($l, $mark),
	[
		expect_single('postgres', 'recall', 'messages', 30),
		expect_bulk('postgres', 'recall', 'messages', 31, 32),
		expect_single('postgres', 'recall', 'messages', 33),
	],
	'events committed around the termination notified once each');
my $dpid2 = wait_dispatcher('postgres');
ok($dpid2 =~ /^\d+$/ && $dpid2 ne $dpid, 'a new dispatcher runs');
$dpid = $dpid2;

# ---------------------------------------------------------------------------
# the gate (see the header)

$node->safe_psql(
	'postgres', q{
CREATE TABLE dispatch_gate (open boolean NOT NULL);
INSERT INTO dispatch_gate VALUES (true);
CREATE FUNCTION dispatch_gate_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(4242);
    IF NOT (SELECT g.open FROM public.dispatch_gate g) THEN
        RAISE EXCEPTION 'dispatch gate closed';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER dispatch_gate BEFORE UPDATE ON recall.dispatch_state
    FOR EACH ROW EXECUTE FUNCTION dispatch_gate_check();
});
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', recall_sql(40));
ok(wait_count($l, $mark + 1), 'open gate: notifications flow');

# ---------------------------------------------------------------------------
# SIGKILL: the dispatcher is killed while it holds the NOTIFYs of events it
# has read but not yet committed; the postmaster restarts the cluster

$mark = scalar @{ $l->{got} };
my $g = $node->background_psql('postgres', timeout => $WAIT);
$g->set_query_timer_restart;
$g->query_safe('SELECT pg_advisory_lock(4242)');
$g->query_safe('BEGIN; SELECT 1 FROM recall.dispatch_state FOR UPDATE;');
ok( wait_until(
		'postgres',
		"SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $dpid"),
	'dispatcher waits for its position row');
$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = false');
$node->safe_psql('postgres', recall_sql(50));
$node->safe_psql('postgres', recall_sql([ 51, 52, 53 ]));
$node->safe_psql('postgres', "BEGIN;\n" . recall_sql(54, 55) . "\nCOMMIT;");
my @crash_expected = (
	expect_single('postgres', 'recall', 'messages', 50),
	expect_bulk('postgres', 'recall', 'messages', 51, 52, 53),
	expect_single('postgres', 'recall', 'messages', 54),
	expect_single('postgres', 'recall', 'messages', 55));
$g->query_safe('COMMIT');
ok( wait_until(
		'postgres',
		"SELECT wait_event = 'advisory' FROM pg_stat_activity WHERE pid = $dpid"
	),
	'dispatcher has read the events and waits to commit its NOTIFYs');
is(quiet_for($l, 1), 0, 'nothing sent yet');

my $log_offset = -s $node->logfile;
kill 'KILL', $dpid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/,
	$log_offset);
$node->wait_for_log(qr/database system is ready to accept connections/,
	$log_offset);
ok(wait_until('postgres', 'SELECT true'), 'cluster back after the crash');
quit_listener($l);
quit_listener($g);
quit_listener({ psql => $w });

# the restarted dispatcher hits the closed gate (and is started again and
# again) until a new listener is there
$l = new_listener('postgres', 'recall', 'recall_long');
ok( wait_until(
		'postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'pg_recall launcher'"
	),
	'launcher back');
$node->wait_for_log(qr/dispatch gate closed/, $log_offset);
is(quiet_for($l, 1), 0, 'closed gate: nothing sent after the restart');
$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = true');
ok(wait_count($l, scalar @crash_expected),
	'events committed before the crash are notified after it');
$node->safe_psql('postgres', recall_sql(56));
ok(wait_count($l, scalar(@crash_expected) + 1), 'marker notified');
is(quiet_for($l, 1.5), 0, 'nothing more comes');
is_deeply(
	described($l, 0),
	[ @crash_expected, expect_single('postgres', 'recall', 'messages', 56) ],
	'after SIGKILL and crash restart: every event notified once, nothing older repeated'
);
$dpid = wait_dispatcher('postgres');
ok($dpid =~ /^\d+$/, 'dispatcher running after the crash restart');

# ---------------------------------------------------------------------------
# clean restart with events waiting

$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = false');
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', recall_sql(60));
$node->safe_psql('postgres', recall_sql([ 61, 62 ]));
my @restart_expected = (
	expect_single('postgres', 'recall', 'messages', 60),
	expect_bulk('postgres', 'recall', 'messages', 61, 62));
is(quiet_for($l, 2.5), 0, 'closed gate: nothing sent');
quit_listener($l);
$node->restart;
$l = new_listener('postgres', 'recall', 'recall_long');
is(quiet_for($l, 1), 0, 'closed gate: nothing sent after the restart');
$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = true');
ok(wait_count($l, scalar @restart_expected),
	'events committed before the restart are notified after it');
$node->safe_psql('postgres', recall_sql(63));
ok(wait_count($l, scalar(@restart_expected) + 1), 'marker notified');
is(quiet_for($l, 1.5), 0, 'nothing more comes');
is_deeply(
	described($l, 0),
	[ @restart_expected, expect_single('postgres', 'recall', 'messages', 63) ],
	'after a clean restart: every event notified once, nothing older repeated');
$dpid = wait_dispatcher('postgres');

# ---------------------------------------------------------------------------
# two databases

$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', $schema);
my $dpid_db2 = wait_dispatcher('db2');
ok($dpid_db2 =~ /^\d+$/ && $dpid_db2 ne $dpid,
	'a second database gets its own dispatcher');
my $l2   = new_listener('db2', 'recall');
my $mark1 = scalar @{ $l->{got} };
$node->safe_psql('db2',      recall_sql(101));
$node->safe_psql('postgres', recall_sql(70));
$node->safe_psql('db2',      recall_sql([ 102, 103 ]));
$node->safe_psql('postgres', recall_sql(71));
ok(wait_count($l2, 2),         'db2 listener notified');
ok(wait_count($l, $mark1 + 2), 'postgres listener notified');
is(quiet_for($l2, 1), 0, 'nothing more in db2');
is_deeply(
	described($l2, 0),
	[
		expect_single('db2', 'recall', 'messages', 101),
		expect_bulk('db2', 'recall', 'messages', 102, 103),
	],
	'db2 gets its own notifications only');
is_deeply(
	described($l, $mark1),
	[
		expect_single('postgres', 'recall', 'messages', 70),
		expect_single('postgres', 'recall', 'messages', 71),
	],
	'postgres gets its own notifications only');

# ---------------------------------------------------------------------------
# DROP EXTENSION, then CREATE EXTENSION, while the dispatcher runs

quit_listener($l2);
$node->safe_psql('db2', 'DROP EXTENSION pg_recall CASCADE; DROP TABLE messages CASCADE;');
ok( wait_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity"
		  . " WHERE backend_type = 'pg_recall dispatcher' AND datname = 'db2'"),
	'the dispatcher of db2 leaves after DROP EXTENSION');
$node->safe_psql('db2', $schema);
ok(wait_dispatcher('db2') =~ /^\d+$/,
	'CREATE EXTENSION again: db2 has a dispatcher again');
$l2 = new_listener('db2', 'recall');
$node->safe_psql('db2', recall_sql(104));
$node->safe_psql('db2', recall_sql([ 105, 106 ]));
ok(wait_count($l2, 2), 'recalls after CREATE EXTENSION are notified');
is(quiet_for($l2, 1), 0, 'nothing more in db2');
is_deeply(
	described($l2, 0),
	[
		expect_single('db2', 'recall', 'messages', 104),
		expect_bulk('db2', 'recall', 'messages', 105, 106),
	],
	'right payloads after CREATE EXTENSION again');
quit_listener($l2);

# both in one transaction, under a dispatcher that does not leave meanwhile
my $dpid_db2_before = wait_dispatcher('db2');
$node->safe_psql('db2',
	"BEGIN; DROP EXTENSION pg_recall CASCADE; DROP TABLE messages CASCADE;\n"
	  . $schema
	  . "\nCOMMIT;");
$l2 = new_listener('db2', 'recall');
$node->safe_psql('db2', recall_sql(107));
ok(wait_count($l2, 1),
	'DROP and CREATE EXTENSION in one transaction: recalls are notified');
is(quiet_for($l2, 1), 0, 'nothing more in db2');
is_deeply(described($l2, 0),
	[ expect_single('db2', 'recall', 'messages', 107) ],
	'right payload after DROP and CREATE EXTENSION in one transaction');
quit_listener($l2);
is(dispatcher_pid('postgres'), $dpid,
	'the other database\'s dispatcher was not disturbed');

# ---------------------------------------------------------------------------
# DROP DATABASE of a database with the extension and a running dispatcher

$node->safe_psql('postgres', 'CREATE DATABASE db3');
$node->safe_psql('db3',      $schema);
$node->safe_psql('db3',      recall_sql(1));
ok(wait_dispatcher('db3') =~ /^\d+$/, 'db3 has a dispatcher');
my $t0 = time;
my ($rc, $out, $err) =
  $node->psql('postgres', 'DROP DATABASE db3', timeout => $WAIT);
is($rc, 0, 'DROP DATABASE of a database with a running dispatcher succeeds')
  or diag $err;
note sprintf('DROP DATABASE took %.1f s', time - $t0);
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_recall dispatcher'"
		  . " AND datname IS DISTINCT FROM 'postgres' AND datname IS DISTINCT FROM 'db2'"
	),
	'0',
	'no dispatcher left for the dropped database');

# notifications in the remaining databases still flow
$mark = scalar @{ $l->{got} };
$node->safe_psql('postgres', recall_sql(80));
ok(wait_count($l, $mark + 1), 'postgres still notified after DROP DATABASE');
is_deeply(described($l, $mark),
	[ expect_single('postgres', 'recall', 'messages', 80) ],
	'right payload');
quit_listener($l);

# only the one SIGKILL of this test crashed anything
my $log = slurp_file($node->logfile);
my @crashes = ($log =~ /was terminated by signal/g);
is(scalar @crashes, 1, 'no server process crashed but the one killed');
unlike($log, qr/PANIC/, 'no PANIC in the server log');

$node->stop;
done_testing();
