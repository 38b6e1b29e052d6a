# Copyright (c) pg_recall authors
#
# 070_citus.pl
#	  Recall on Citus distributed tables: a coordinator and two workers on
#	  loopback, each with shared_preload_libraries = 'citus,pg_recall'.
#	  enable() on a distributed table and on a table distributed afterwards
#	  (no Citus setting asked of the user), the registry of each worker kept
#	  by Citus's propagation of the guard, single- and multi-shard recalls
#	  through the coordinator (one recalled_at across workers), the actor
#	  and reason forwarded with SET LOCAL and set_config(..., true) and a
#	  left-over value refused, refusals (42501) and frozen rows (55000), the
#	  invariant on a shard (23514, replica role included), events and
#	  notifications under the logical table's name on the workers and,
#	  copied once into the coordinator's log, through events_after() and the
#	  coordinator's dispatcher; a shard move in Citus's default mode (logical
#	  replication, the table has a primary key) with recalls while it runs,
#	  a move in 'block_writes' mode, a shard split; disable(); copies
#	  refused.
#
#	  Skipped unless Citus is installed for the server under test
#	  (citus.so in pg_config --pkglibdir).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use CitusKit;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

citus_skip_unless_installed();

# Bound of every wait, in seconds.
my $WAIT = 60;

# ---------------------------------------------------------------------------
# the cluster: every node preloads both libraries and listens on loopback

# What every node of this test adds to postgresql.conf.
my $CONF = q{
recall.worker_idle_timeout = '1h'
recall.purge_delay = 0
};

my ($coord, $w1, $w2) = citus_cluster($CONF);
$coord->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE ROLE moderator LOGIN IN ROLE recall_admin;
});

is($w1->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'pg_recall'"),
	'1.1', 'CREATE EXTENSION pg_recall on the coordinator reaches the workers');

# ---------------------------------------------------------------------------
# helpers

# psql on a node with errors let through; returns the last error's SQLSTATE
# ('' for none) and stderr.
sub sqlstate
{
	my ($n, $sql) = @_;
	my ($rc, $out, $err) = $n->psql('postgres', "$sql;\n\\echo SQLSTATE=:LAST_ERROR_SQLSTATE",
		on_error_stop => 0);
	my ($state) = $out =~ /SQLSTATE=(\S*)\s*$/;
	$state = '' if !defined $state || $state eq '00000';
	return wantarray ? ($state, $err) : $state;
}

# Poll a query on a node until it returns $expected, at most $WAIT s.
sub wait_until
{
	my ($n, $query, $expected) = @_;
	my $deadline = time + $WAIT;
	my $out = '';
	while (time < $deadline)
	{
		my ($rc, $stdout) = $n->psql('postgres', $query);
		$out = $stdout // '';
		return 1 if defined $rc && $rc == 0 && $out eq $expected;
		usleep(100_000);
	}
	diag "timed out: $query\nexpected: $expected\nlast output: $out";
	return 0;
}

# The node (worker1/worker2) holding a key's shard of a table.
sub node_of
{
	my ($table, $id) = @_;
	my $port = $coord->safe_psql('postgres',
		"SELECT p.nodeport FROM pg_dist_shard_placement p"
		  . " WHERE p.shardid = get_shard_id_for_distribution_column('$table', $id)");
	return $port == $w1->port ? $w1 : $w2;
}

# A listener: a background psql that LISTENs and collects notifications.
sub new_listener
{
	my ($n) = @_;
	my $l = { psql => $n->background_psql('postgres', timeout => $WAIT), got => [] };
	$l->{psql}->set_query_timer_restart;
	$l->{psql}->query_safe('LISTEN recall');
	return $l;
}

sub pump
{
	my ($l) = @_;
	my $out = $l->{psql}->query('SELECT 1');
	while ($out =~ /^Asynchronous notification "recall" with payload "(.*)" received from server process with PID \d+\.\r?$/mg)
	{
		push @{ $l->{got} }, decode_json($1);
	}
	return $l->{got};
}

# Wait until a listener has notifications covering $n events.
sub wait_events
{
	my ($l, $n) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		my $count = 0;
		$count += ($_->{op} eq 'recall' ? 1 : $_->{count}) for @{ pump($l) };
		return $count if $count >= $n;
		usleep(100_000);
	}
	return -1;
}

# The worker events of a table, as "id" keys, on one node.
sub worker_events
{
	my ($n, $where) = @_;
	return $n->safe_psql('postgres',
		"SELECT coalesce(string_agg(e.tbl::text || ':' || (e.pk->>'id'), ',' ORDER BY e.seq), '')"
		  . " FROM recall.events e WHERE $where");
}

# ---------------------------------------------------------------------------
# enable on a table that is distributed already

$coord->safe_psql(
	'postgres', q{
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint NOT NULL,
    sender       text NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    body         text
);
SELECT create_distributed_table('messages', 'id', shard_count => 4);
INSERT INTO messages (id, conversation, sender, body)
SELECT g, g % 5, CASE WHEN g <= 60 THEN 'alice' ELSE 'bob' END, 'secret text ' || g
FROM generate_series(1, 100) g;
GRANT SELECT, UPDATE ON messages TO app, moderator;
});
is(sqlstate($coord, q{SELECT recall.enable('messages', content => '{body}', sender => 'sender',
                                sent_at => 'sent_at', conversation => 'conversation')}),
	'', 'enable on a distributed table, without any Citus setting in the session');
is($coord->safe_psql('postgres', 'SHOW citus.enable_unsafe_triggers'), 'off',
	'the session keeps citus.enable_unsafe_triggers off');

foreach my $w ($w1, $w2)
{
	is($w->safe_psql('postgres',
			"SELECT tbl::text || ' ' || content::text FROM recall.tables"),
		'messages {body}', $w->name . ': the registry has the logical table');
	is($w->safe_psql('postgres', q{
SET citus.override_table_visibility = off;
SELECT count(*) FILTER (WHERE g.tgenabled = 'A') || '/' || count(*)
FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
WHERE c.relname ~ '^messages_[0-9]+$' AND g.tgname LIKE '~recall_guard%'}),
		'2/2', $w->name . ': every shard has the guard, firing always');
	is($w->safe_psql('postgres', q{
SET citus.override_table_visibility = off;
SELECT string_agg(DISTINCT a.attstattarget::text, ',')
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
WHERE c.relname ~ '^messages_[0-9]+$' AND a.attname = 'body'}),
		'0', $w->name . ': content statistics off on the shards');
}

# ---------------------------------------------------------------------------
# recalls through the coordinator

my $l_coord = new_listener($coord);
my $l_w1    = new_listener($w1);

$coord->safe_psql(
	'postgres', q{
SET ROLE app;
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET recalled_at = now() WHERE id = 1;
COMMIT;
});
is($coord->safe_psql('postgres', 'SELECT body IS NULL, recalled_by FROM messages WHERE id = 1'),
	't|alice', 'single-shard recall: wiped, actor from SET LOCAL through the coordinator');

# a statement that recalls a whole conversation, on both workers
my @conv = split /,/, $coord->safe_psql('postgres',
	"SELECT string_agg(id::text, ',' ORDER BY id) FROM messages WHERE conversation = 2 AND id <= 60");
my %nodes_hit = map { (node_of('messages', $_)->name => 1) } @conv;
is(scalar(keys %nodes_hit), 2, 'the conversation spans both workers');
$coord->safe_psql(
	'postgres', q{
SET ROLE app;
BEGIN;
SELECT set_config('recall.actor', 'alice', true);
UPDATE messages SET recalled_at = now() WHERE conversation = 2 AND id <= 60;
COMMIT;
});
is($coord->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT recalled_at) || ' ' || bool_and(body IS NULL)
       || ' ' || string_agg(DISTINCT recalled_by, ',')
FROM messages WHERE conversation = 2 AND id <= 60}),
	scalar(@conv) . ' 1 true alice',
	'multi-shard recall: all wiped, one recalled_at on every worker, actor from set_config(..., true)');

# recall.recall() and recall_sender() through the coordinator
is($coord->safe_psql('postgres', q{SET ROLE app; SELECT recall.recall('messages', 3::bigint, actor => 'alice')}),
	't', 'recall.recall() with the actor argument, outside a transaction block');
is($coord->safe_psql('postgres', q{
SET ROLE moderator;
BEGIN;
SET LOCAL recall.reason = 'spam wave';
SELECT recall.recall_sender('messages', 'bob', 'spam wave', NULL, NULL);
COMMIT;}),
	'40', 'recall_sender() recalls on every worker');
is($coord->safe_psql('postgres',
		"SELECT count(*) FROM messages WHERE sender = 'bob' AND (body IS NOT NULL OR recall_reason <> 'spam wave')"),
	'0', 'the admin recall is wiped and carries its reason');

# ---------------------------------------------------------------------------
# refusals, frozen rows, the invariant

is(sqlstate($coord, q{
SET ROLE app;
BEGIN;
SET LOCAL recall.actor = 'mallory';
UPDATE messages SET recalled_at = now() WHERE id = 4;
COMMIT;}), '42501', 'a recall by someone else is refused on the worker (42501)');
is(sqlstate($coord, q{
SET ROLE moderator;
BEGIN;
SET LOCAL recall.actor = 'mallory';
UPDATE messages SET recalled_at = now() WHERE id = 4;
COMMIT;}), '42501', 'an admin recall without a reason is refused (42501)');
my ($state, $err) = sqlstate($coord, q{
SET ROLE app;
SET recall.actor = 'alice';
BEGIN;
UPDATE messages SET recalled_at = now() WHERE id = 4;
COMMIT;});
is($state, '42501', 'recall.actor left over from an earlier transaction is refused on the worker');
like($err, qr/from an earlier transaction/, '... with the left-over message');
is(sqlstate($coord, q{
SET ROLE app;
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET recalled_at = now() WHERE id = 4;
COMMIT;}), '', 'the same recall in the transaction form is accepted');
is($coord->safe_psql('postgres', 'SELECT body IS NULL FROM messages WHERE id = 4'),
	't', '... and wipes');
is(sqlstate($coord, q{UPDATE messages SET recalled_at = NULL WHERE id = 1}),
	'55000', 'un-recall refused on the worker (55000)');
is(sqlstate($coord, q{UPDATE messages SET body = 'back' WHERE id = 1}),
	'55000', 'an edit of a recalled row refused (55000)');
is(sqlstate($coord, q{INSERT INTO messages VALUES (1000, 1, 'alice', now(), 'text', now(), 'alice', NULL)}),
	'23514', 'a recalled row inserted with content violates the invariant (23514)');

# on the shard itself, on its worker
my $wx = node_of('messages', 1);
my $shard1 = $coord->safe_psql('postgres',
	"SELECT shard_name('messages', get_shard_id_for_distribution_column('messages', 1))");
is(sqlstate($wx, qq{
SET citus.enable_manual_changes_to_shards = on;
UPDATE $shard1 SET body = 'back' WHERE id = 1;}),
	'55000', 'an edit on the shard, on its worker, is refused too');
is(sqlstate($wx, qq{
SET citus.enable_manual_changes_to_shards = on;
SET session_replication_role = replica;
UPDATE $shard1 SET body = 'back' WHERE id = 1;}),
	'23514', 'under session_replication_role = replica the shard keeps the invariant (23514)');
is($coord->safe_psql('postgres', 'SELECT body IS NULL FROM messages WHERE id = 1'),
	't', 'the recalled row is still wiped');

# ---------------------------------------------------------------------------
# events and notifications name the logical table

my $recalled = $coord->safe_psql('postgres', 'SELECT count(*) FROM messages WHERE recalled_at IS NOT NULL');
is(worker_events($w1, "e.tbl::text <> 'messages'") . worker_events($w2, "e.tbl::text <> 'messages'"),
	'', 'worker events name the logical table, never a shard');
is( $w1->safe_psql('postgres', 'SELECT count(*) FROM recall.events')
	  + $w2->safe_psql('postgres', 'SELECT count(*) FROM recall.events'),
	$recalled, 'one worker event per recalled message');
is($w1->safe_psql('postgres', q{SELECT count(*) FROM recall.audit WHERE reason = 'spam wave'})
	  + $w2->safe_psql('postgres', q{SELECT count(*) FROM recall.audit WHERE reason = 'spam wave'}),
	'40', 'the admin recalls are audited on their workers');

my $w1_events = $w1->safe_psql('postgres', 'SELECT count(*) FROM recall.events');
is(wait_events($l_w1, $w1_events), $w1_events,
	'a listener on a worker is notified of its recalls');
is(scalar(grep { $_->{table} ne 'public.messages' } @{ $l_w1->{got} }),
	0, '... under the logical table name');

# the coordinator copies the workers' events into its log, once each
$coord->safe_psql('postgres', 'SELECT count(*) FROM recall.events_after(NULL)');
ok(wait_until($coord, 'SELECT count(*) FROM recall.events', $recalled),
	'events_after() on the coordinator copies every worker event');
is($coord->safe_psql('postgres', 'SELECT recall.citus_gather()'), '0', 'and none twice');
is($coord->safe_psql('postgres', q{
SELECT count(*) || ' ' || count(DISTINCT pk) || ' ' || bool_and(tbl = 'messages'::regclass)
FROM recall.events_after(NULL, 10000)}),
	"$recalled $recalled true", 'events_after() on the coordinator returns each recall once, under the logical table');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM recall.audit WHERE reason = 'spam wave'}),
	'40', 'the coordinator audit log has the admin recalls too');
is(wait_events($l_coord, $recalled), $recalled,
	'a listener on the coordinator is notified of every recall');
is(scalar(grep { $_->{table} ne 'public.messages' } @{ $l_coord->{got} }),
	0, '... under the logical table name');

# gap-free across workers: a cursor taken now, then recalls on both workers
my $conv3 = $coord->safe_psql('postgres',
	"SELECT count(*) FROM messages WHERE conversation = 3 AND id <= 60 AND recalled_at IS NULL");
my $cursor = $coord->safe_psql('postgres',
	"SELECT cursor FROM recall.events_after(NULL, 10000) ORDER BY seq DESC LIMIT 1");
$coord->safe_psql(
	'postgres', q{
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET recalled_at = now() WHERE conversation = 3 AND id <= 60;
COMMIT;
});
$coord->safe_psql('postgres', 'SELECT recall.citus_gather()');
is($coord->safe_psql('postgres',
		"SELECT count(*) FROM recall.events_after('$cursor', 10000) WHERE (pk->>'id')::bigint % 5 = 3"),
	$conv3, 'a reader resuming from its cursor gets the new recalls of both workers');

# ---------------------------------------------------------------------------
# enable again with one more content column: the rows recalled already are
# wiped on their shards

$coord->safe_psql(
	'postgres', q{
ALTER TABLE messages ADD COLUMN preview text;
UPDATE messages SET preview = 'preview ' || id::text;
SELECT recall.enable('messages', content => '{body,preview}', sender => 'sender',
                     sent_at => 'sent_at', conversation => 'conversation');
});
is($coord->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE recalled_at IS NOT NULL AND preview IS NOT NULL) || ' '
       || count(*) FILTER (WHERE recalled_at IS NULL AND preview IS NULL)
FROM messages}),
	'0 0', 're-enable wipes the new content column of the recalled rows on the shards, only there');

# ---------------------------------------------------------------------------
# enable before distribution

$coord->safe_psql(
	'postgres', q{
CREATE TABLE later (
    id      bigint PRIMARY KEY,
    sender  text NOT NULL,
    body    text,
    preview text
);
INSERT INTO later SELECT g, 'carol', 'draft ' || g, 'draft' FROM generate_series(1, 40) g;
SELECT recall.enable('later', content => '{body,preview}', sender => 'sender');
UPDATE later SET recalled_at = now(), recalled_by = 'carol' WHERE id = 40;
});
is(sqlstate($coord, q{SELECT create_distributed_table('later', 'id', shard_count => 4)}),
	'', 'create_distributed_table on an enabled table, without citus.enable_unsafe_triggers');
is($coord->safe_psql('postgres', 'SHOW citus.enable_unsafe_triggers'), 'off',
	'the setting was on for that statement only');
$coord->safe_psql('postgres', q{SELECT truncate_local_data_after_distributing_table('later')});
is($w2->safe_psql('postgres', q{SELECT count(*) FROM recall.tables WHERE tbl = 'later'::regclass}),
	'1', 'the workers got its registry row at distribution');
$coord->safe_psql(
	'postgres', q{
BEGIN;
SET LOCAL recall.actor = 'carol';
UPDATE later SET recalled_at = now() WHERE id BETWEEN 1 AND 10;
COMMIT;
});
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM later WHERE recalled_at IS NOT NULL AND body IS NULL AND preview IS NULL}),
	'11', 'recalls on a table distributed after enable: wiped, the earlier recall kept wiped');
is(sqlstate($coord, q{CREATE TABLE plain (id int PRIMARY KEY, note text);
SELECT recall.enable('plain', content => '{note}');
SELECT create_reference_table('plain')}),
	'0A000', 'a reference table of an enabled table is refused');

# ---------------------------------------------------------------------------
# the 'setting' actor source (PostgREST), through the coordinator

$coord->safe_psql(
	'postgres', q{
SELECT recall.enable('later', content => '{body,preview}', sender => 'sender',
                     actor_source => 'setting', actor_setting => 'request.jwt.claims',
                     actor_claim => 'sub');
GRANT SELECT, UPDATE ON later TO app;
});
is(sqlstate($coord, q{
SET ROLE app;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "carol"}', true);
UPDATE later SET recalled_at = now() WHERE id = 11;
COMMIT;}), '', 'the claim set with set_config(..., true) reaches the worker');
is($coord->safe_psql('postgres', 'SELECT recalled_by FROM later WHERE id = 11'), 'carol',
	'... and names the actor');
is(sqlstate($coord, q{
SET ROLE app;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "mallory"}', true);
UPDATE later SET recalled_at = now() WHERE id = 12;
COMMIT;}), '42501', 'a claim naming someone else is refused');

# ---------------------------------------------------------------------------
# shard moves and a split keep the guard and its settings

my $moved = $coord->safe_psql('postgres',
	"SELECT get_shard_id_for_distribution_column('messages', 5)");
my ($src, $dst) = (node_of('messages', 5), undef);
$dst = $src == $w1 ? $w2 : $w1;
my @in_shard = split /,/, $coord->safe_psql('postgres', qq{
SELECT string_agg(id::text, ',' ORDER BY id) FROM messages
WHERE get_shard_id_for_distribution_column('messages', id) = $moved AND recalled_at IS NULL
  AND sender = 'alice'});
ok(@in_shard >= 4, 'the shard to move holds messages not yet recalled');

# the default mode: logical replication (the table has a primary key);
# recalls go on while the shard is copied and caught up
my $mover = $coord->background_psql('postgres', timeout => $WAIT);
$mover->query_until(qr/moving/, sprintf(q{
\echo moving
SELECT citus_move_shard_placement(%s, '127.0.0.1', %d, '127.0.0.1', %d);
\echo moved
}, $moved, $src->port, $dst->port));
foreach my $id (@in_shard[ 0 .. 1 ])
{
	$coord->safe_psql('postgres',
		"BEGIN; SET LOCAL recall.actor = 'alice'; UPDATE messages SET recalled_at = now() WHERE id = $id; COMMIT;");
}
$mover->query_until(qr/moved/, '');
$mover->quit;
is($coord->safe_psql('postgres', "SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $moved"),
	$dst->port, 'the shard moved (logical replication)');
$coord->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; UPDATE messages SET recalled_at = now() WHERE id = $in_shard[2]; COMMIT;");
is($coord->safe_psql('postgres', sprintf(
			'SELECT count(*) FROM messages WHERE id IN (%s) AND recalled_at IS NOT NULL AND body IS NULL',
			join(',', @in_shard[ 0 .. 2 ]))),
	'3', 'recalls during and after the move are wiped on the new placement');
is($dst->safe_psql('postgres', qq{
SET citus.override_table_visibility = off;
SELECT g.tgenabled FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
WHERE c.relname = 'messages_$moved' AND g.tgname LIKE '~recall_guard%'}),
	'A', 'the moved shard has the guard, firing always');
is(worker_events($dst, "e.pk->>'id' = '$in_shard[2]'"), "messages:$in_shard[2]",
	'the recall on the moved shard is logged under the logical table on its new node');
is(sqlstate($dst, qq{
SET citus.enable_manual_changes_to_shards = on;
SET session_replication_role = replica;
UPDATE messages_$moved SET body = 'back' WHERE id = $in_shard[0];}),
	'23514', 'the invariant holds on the moved shard');

# back, blocking writes
is(sqlstate($coord, sprintf(
			q{SELECT citus_move_shard_placement(%s, '127.0.0.1', %d, '127.0.0.1', %d, shard_transfer_mode => 'block_writes')},
			$moved, $dst->port, $src->port)),
	'', 'a move in block_writes mode');
$coord->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; UPDATE messages SET recalled_at = now() WHERE id = $in_shard[3]; COMMIT;");
is($coord->safe_psql('postgres', "SELECT body IS NULL FROM messages WHERE id = $in_shard[3]"),
	't', 'recall after the move back');

# a split of the shard into two, one on each worker
is(sqlstate($coord, sprintf(
			q{SELECT citus_split_shard_by_split_points(%s, ARRAY[(SELECT ((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text FROM pg_dist_shard WHERE shardid = %s)], ARRAY[%s, %s], shard_transfer_mode => 'block_writes')},
			$moved, $moved,
			$coord->safe_psql('postgres', "SELECT nodeid FROM pg_dist_node WHERE nodeport = " . $w1->port),
			$coord->safe_psql('postgres', "SELECT nodeid FROM pg_dist_node WHERE nodeport = " . $w2->port))),
	'', 'a shard split');
my $left = $coord->safe_psql('postgres',
	"SELECT string_agg(id::text, ',') FROM messages WHERE recalled_at IS NULL AND sender = 'alice'");
$coord->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; UPDATE messages SET recalled_at = now() WHERE id IN ($left); COMMIT;");
is($coord->safe_psql('postgres', "SELECT count(*) FROM messages WHERE sender = 'alice' AND body IS NOT NULL"),
	'0', 'recalls after the split: every message of alice wiped');
is(worker_events($w1, "e.tbl::text <> 'messages' AND e.tbl::text <> 'later'")
	  . worker_events($w2, "e.tbl::text <> 'messages' AND e.tbl::text <> 'later'"),
	'', 'still no shard names in the logs');

# a node added later gets the registry with Citus's metadata, and a shard
my $w3 = citus_node('worker3', $CONF);
$coord->safe_psql('postgres', sprintf(q{SELECT citus_add_node('127.0.0.1', %d)}, $w3->port));
is($w3->safe_psql('postgres', q{SELECT string_agg(tbl::text, ',' ORDER BY tbl::text) FROM recall.tables}),
	'later,messages', 'a new node has the registry of the enabled tables');
$coord->safe_psql(
	'postgres', q{
INSERT INTO messages (id, conversation, sender, body) VALUES (500, 1, 'dora', 'late secret');
});
my $s500 = $coord->safe_psql('postgres', "SELECT get_shard_id_for_distribution_column('messages', 500)");
$coord->safe_psql('postgres', sprintf(
		q{SELECT citus_move_shard_placement(%s, '127.0.0.1', %d, '127.0.0.1', %d, shard_transfer_mode => 'block_writes')},
		$s500, node_of('messages', 500)->port, $w3->port));
$coord->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'dora'; UPDATE messages SET recalled_at = now() WHERE id = 500; COMMIT;");
is($coord->safe_psql('postgres', 'SELECT body IS NULL, recalled_by FROM messages WHERE id = 500'),
	't|dora', 'a recall on the new node, through the coordinator');
is(worker_events($w3, 'true'), 'messages:500', '... logged there under the logical table');
$coord->safe_psql('postgres', 'SELECT recall.citus_gather()');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM recall.events WHERE pk->>'id' = '500'}),
	'1', '... and copied to the coordinator');

# ---------------------------------------------------------------------------
# copies, disable

is(sqlstate($coord, q{
CREATE TABLE previews (message_id bigint PRIMARY KEY, preview text);
SELECT recall.add_copy('messages', 'previews', '{message_id}', '{preview}')}),
	'0A000', 'copies with a Citus table are refused (0A000)');
is(sqlstate($coord, q{SELECT recall.disable('later')}), '', 'disable a distributed table');
is($w1->safe_psql('postgres', q{SELECT count(*) FROM recall.tables WHERE tbl = 'later'::regclass}),
	'0', 'its registry rows are gone from the workers');
# (the shards placed on each node: those left behind by a move or a split
# are dropped later by Citus)
my ($guarded, $shards) = (0, 0);
foreach my $w ($w1, $w2, $w3)
{
	my ($g, $n) = split /\|/, $w->safe_psql('postgres', q{
SELECT count(g.oid), count(*) FROM pg_dist_shard s
     JOIN pg_dist_placement p ON p.shardid = s.shardid
     LEFT JOIN pg_trigger g ON g.tgrelid = to_regclass(shard_name(s.logicalrelid, s.shardid))
                           AND g.tgname LIKE '~recall_guard%'
WHERE s.logicalrelid = 'later'::regclass
  AND p.groupid = (SELECT groupid FROM pg_dist_local_group)});
	$guarded += $g;
	$shards  += $n;
}
ok($shards > 0 && $guarded == 0, "and the guards from its $shards shards");

$l_coord->{psql}->quit;
$l_w1->{psql}->quit;
$_->stop foreach ($w3, $w2, $w1, $coord);
done_testing();
