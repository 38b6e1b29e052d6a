# Copyright (c) pg_recall authors
#
# 013_event_retention.pl
#	  The event log's retention.  recall.prune_events(older_than) deletes
#	  the events recalled longer ago than older_than that are both notified
#	  and purged, and keeps the others: an event not yet notified (the
#	  dispatcher's position is held back by a trigger that makes its
#	  transaction fail), an event not yet purged (recall.purge_delay of an
#	  hour), a recent one.  Purging off (recall.purge_delay = 0) or a table
#	  dropped counts as purged.  Bad arguments are 22023; PUBLIC may not call
#	  it, recall_admin may.  recall.event_retention: the dispatcher deletes
#	  old notified, purged events by itself, keeps the unpurged ones, and
#	  with 0 keeps everything.

use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Bound of every wait, in seconds.
my $WAIT = 60;

my $node = PostgreSQL::Test::Cluster->new('retention');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = '1s'
recall.event_retention = 0
recall.worker_idle_timeout = '1min'
});
$node->start;

# Poll a query until it returns $expected (default 't'), at most $WAIT s.
sub wait_until
{
	my ($query, $expected) = @_;
	$expected = 't' unless defined $expected;
	my $deadline = time + $WAIT;
	my $out      = '';
	while (time < $deadline)
	{
		my ($rc, $stdout) = $node->psql('postgres', $query, timeout => $WAIT);
		$out = $stdout // '';
		return 1 if defined $rc && $rc == 0 && $out eq $expected;
		usleep(100_000);
	}
	diag "timed out: $query\nexpected: $expected\nlast output: $out";
	return 0;
}

# Change settings and wait until the server has read them.
sub set_conf
{
	my (%set) = @_;
	$node->safe_psql('postgres',
		join('', map { "ALTER SYSTEM SET $_ = '$set{$_}'; " } sort keys %set)
		  . 'SELECT pg_reload_conf();');
	for my $name (keys %set)
	{
		wait_until(
			"SELECT setting = '$set{$name}' OR current_setting('$name') = '$set{$name}'"
			  . " FROM pg_settings WHERE name = '$name'")
		  or diag "setting $name not applied";
	}
	# the workers read the file on their own SIGHUP
	usleep(300_000);
}

# A listener on channel "recall".
my $listener = $node->background_psql('postgres', timeout => $WAIT);
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN recall');
my %notified;

sub wait_notified
{
	my (@keys) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		my $out = $listener->query('SELECT 1');
		while ($out =~
			/^Asynchronous notification "recall" with payload "(.*)" received from server process with PID \d+\.\r?$/mg
		  )
		{
			my $p = eval { decode_json($1) };
			$notified{"$p->{table}:$p->{pk}{id}"} = 1 if ref $p;
		}
		return 1 unless grep { !$notified{$_} } @keys;
		usleep(50_000);
	}
	diag 'timed out waiting for notifications of ' . join(',', grep { !$notified{$_} } @keys);
	return 0;
}

# Recall message $id of table $tbl.
sub recall
{
	my ($tbl, $id) = @_;
	$node->safe_psql('postgres',
		"SELECT recall.recall('$tbl', ${id}::bigint, 'alice');");
}

# Is the event of message $id of table $tbl still in the log?
sub kept
{
	my ($tbl, $id) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM recall.events WHERE tbl = '$tbl'::regclass AND pk->>'id' = '$id'"
	);
}

# Has the purge position of $tbl reached the event of message $id?
sub purged_query
{
	my ($tbl, $id) = @_;
	return "SELECT EXISTS (SELECT FROM recall.events e JOIN recall.purge_state p ON p.tbl = e.tbl"
	  . " WHERE e.tbl = '$tbl'::regclass AND e.pk->>'id' = '$id' AND (e.xid, e.seq) <= (p.xid, p.seq))";
}

my $prune = "SELECT recall.prune_events('0')";

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_recall;
CREATE TABLE msgs (id bigint PRIMARY KEY, sender text, body text);
CREATE TABLE other (id bigint PRIMARY KEY, sender text, body text);
INSERT INTO msgs SELECT i, 'alice', 'secret text ' || i FROM generate_series(1, 100) AS i;
INSERT INTO other SELECT i, 'alice', 'secret text ' || i FROM generate_series(1, 100) AS i;
SELECT recall.enable('msgs', '{body}', sender => 'sender');
SELECT recall.enable('other', '{body}', sender => 'sender');
-- the gate: while closed, the dispatcher cannot move its position
CREATE TABLE dispatch_gate (open boolean NOT NULL);
INSERT INTO dispatch_gate VALUES (true);
CREATE FUNCTION dispatch_gate_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (SELECT g.open FROM public.dispatch_gate g) THEN
        RAISE EXCEPTION 'dispatch gate closed';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER dispatch_gate BEFORE UPDATE ON recall.dispatch_state
    FOR EACH ROW EXECUTE FUNCTION dispatch_gate_check();
CREATE ROLE plain LOGIN;
CREATE ROLE admin LOGIN IN ROLE recall_admin;
});

# ---------------------------------------------------------------------------
# recall.prune_events

# notified and purged: deleted
recall('msgs', 1);
recall('msgs', 2);
ok(wait_notified('public.msgs:1', 'public.msgs:2'), 'events 1 and 2 notified');
ok(wait_until(purged_query('msgs', 2)), '... and purged');
is($node->safe_psql('postgres', "SELECT recall.prune_events('1 hour')"),
	'0', 'prune_events(1 hour) keeps recent events');
is(kept('msgs', 1), '1', '... event 1 is still there');
is($node->safe_psql('postgres', $prune), '2',
	'prune_events(0) deletes the two notified, purged events');
is(kept('msgs', 1) + kept('msgs', 2), 0, '... both gone');

# not purged yet: kept
set_conf('recall.purge_delay' => '1h');
recall('msgs', 3);
ok(wait_notified('public.msgs:3'), 'event 3 notified');
is($node->safe_psql('postgres', $prune), '0',
	'prune_events keeps a notified event not purged yet');
is(kept('msgs', 3), '1', '... event 3 is still there');

# not notified yet: kept, even with purging off (which counts as purged)
$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = false');
recall('msgs', 4);
set_conf('recall.purge_delay' => '0');
is($node->safe_psql('postgres', $prune), '1',
	'purging off: the notified event 3 counts as purged and goes');
is(kept('msgs', 3), '0', '... event 3 gone');
is(kept('msgs', 4), '1', '... the event 4 not yet notified is kept');
$node->safe_psql('postgres', 'UPDATE dispatch_gate SET open = true');
ok(wait_notified('public.msgs:4'), 'gate open: event 4 notified');
is($node->safe_psql('postgres', $prune), '1', 'now event 4 goes too');
is(kept('msgs', 4), '0', '... event 4 gone');

# a dropped table's events count as purged
set_conf('recall.purge_delay' => '1h');
recall('other', 1);
ok(wait_notified('public.other:1'), 'event of "other" notified');
is($node->safe_psql('postgres', $prune), '0', '... not purged: kept');
my $other_oid = $node->safe_psql('postgres', "SELECT 'other'::regclass::oid");
$node->safe_psql('postgres', 'DROP TABLE other CASCADE');
is($node->safe_psql('postgres', $prune), '1',
	'the table dropped, its event goes');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM recall.events WHERE tbl::oid = $other_oid"),
	'0',
	'... gone');

# arguments and privileges
for my $bad ('NULL', "'-1 s'")
{
	my ($rc, $out, $err) =
	  $node->psql('postgres', "SELECT recall.prune_events($bad)",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/22023: older_than must be a non-negative interval/,
		"prune_events($bad): 22023");
}
{
	my ($rc, $out, $err) = $node->psql('postgres', $prune,
		extra_params => [ '-U', 'plain', '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/42501: permission denied for function prune_events/,
		'PUBLIC may not call prune_events');
	($rc, $out, $err) =
	  $node->psql('postgres', $prune, extra_params => [ '-U', 'admin' ]);
	is($rc, 0, 'a member of recall_admin may') or diag $err;
}

# ---------------------------------------------------------------------------
# recall.event_retention: the dispatcher trims the log by itself

set_conf('recall.purge_delay' => '1s', 'recall.event_retention' => '1');
recall('msgs', 10);
recall('msgs', 11);
ok(wait_notified('public.msgs:10', 'public.msgs:11'), 'events 10 and 11 notified');
ok( wait_until(
		"SELECT count(*) FROM recall.events WHERE tbl = 'msgs'::regclass"
		  . " AND pk->>'id' IN ('10', '11')",
		'0'),
	'recall.event_retention = 1s: the dispatcher deletes them once notified and purged'
);

set_conf('recall.purge_delay' => '1h');
recall('msgs', 12);
ok(wait_notified('public.msgs:12'), 'event 12 notified');
# the dispatcher runs (idle timeout 1 min) and trims every second
sleep 4;
is(kept('msgs', 12), '1', 'the dispatcher keeps an event not purged yet');
ok( $node->safe_psql('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'pg_recall dispatcher'"
	) eq 't',
	'... while it runs');

set_conf('recall.purge_delay' => '0', 'recall.event_retention' => '0');
recall('msgs', 13);
ok(wait_notified('public.msgs:13'), 'event 13 notified');
sleep 3;
is(kept('msgs', 12) + kept('msgs', 13), 2,
	'recall.event_retention = 0 keeps everything');
set_conf('recall.event_retention' => '1');
ok( wait_until(
		"SELECT count(*) FROM recall.events WHERE tbl = 'msgs'::regclass"
		  . " AND pk->>'id' IN ('12', '13')",
		'0'),
	'retention back on (purging off): both go');

eval { $listener->quit; };
my $log = slurp_file($node->logfile);
unlike($log, qr/was terminated by signal/, 'no server process crashed');
unlike($log, qr/trimming recall.events failed/, 'no failed trim');

$node->stop;
done_testing();
