# Copyright (c) pg_recall authors
#
# 071_citus_erasure.pl
#	  Erasure on Citus workers, proven by a forensic scan of the shard's
#	  files on the worker that holds it (ForensicScan.pm): a coordinator
#	  and two workers on loopback, each with shared_preload_libraries =
#	  'citus,pg_recall', recall.purge_delay = 1s,
#	  recall.index_rebuild_interval = 0, and idle workers leaving after 2s
#	  (so that a recall's commit on a worker must start its purger).  A
#	  distributed, enabled table with a btree and a GIN (tsvector
#	  expression) index on its content, one content column stored out of
#	  line (STORAGE EXTERNAL).  Nobody calls recall.purge() in 1 and 3:
#	  1. a single-shard recall through the coordinator: the worker's event
#	     names the logical table, its residue the shard and the shard's
#	     TOAST relation; the worker's own purger (started by the commit)
#	     erases the text from the shard's heap and TOAST files, and the
#	     worker's rebuilder rebuilds the SHARD's content indexes (REINDEX
#	     CONCURRENTLY), after which no file of the shard holds a byte of it
#	     while the control message is still there; recall.purge_state and
#	     recall.purge_status on the worker show the logical table;
#	  2. recall.purge() on the worker (automatic purge off) reports the
#	     shard's heap, TOAST and content indexes, and erases;
#	  3. a multi-shard recall on both workers, committed with two-phase
#	     commit (COMMIT PREPARED): both workers' purgers are started and
#	     erase;
#	  4. the sweep on a worker visits the shards (recall.sweep_state rows
#	     for each local shard and its TOAST relation) and erases an edited
#	     message's earlier version from the shard's heap;
#	  5. a partitioned distributed table: the recall's residue names the
#	     shard of the row's partition, whose content index is rebuilt, and
#	     no file of it holds the text; the sweep visits it.
#
#	  Skipped unless Citus is installed for the server under test
#	  (citus.so in pg_config --pkglibdir).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use CitusKit;
use ForensicScan;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

citus_skip_unless_installed();

# Bound of every wait, in seconds (timing is logged, never asserted).
my $WAIT = 60;
my $db   = 'postgres';

my ($coord, $w1, $w2) = citus_cluster(
	q{
recall.purge_delay = '1s'
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
recall.worker_idle_timeout = '2s'
});

# Citus hides shards from the catalog queries of ordinary sessions; the
# scans read the shards' pg_class rows, as pg_recall's workers do.
$ENV{PGOPTIONS} = '-c citus.override_table_visibility=off';

$coord->safe_psql(
	$db, q{
CREATE TABLE msgs (
    id     bigint PRIMARY KEY,
    sender text NOT NULL,
    body   text,
    big    text
);
ALTER TABLE msgs ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX msgs_body_idx ON msgs (body);
CREATE INDEX msgs_tsv_idx ON msgs USING gin (to_tsvector('simple', body));
SELECT create_distributed_table('msgs', 'id', shard_count => 4);
INSERT INTO msgs (id, sender, body, big)
SELECT g, 'carol', 'filler ' || md5(g::text), repeat(md5(g::text), 40)
FROM generate_series(1, 200) g;
SELECT recall.enable('msgs', content => '{body,big}', sender => 'sender');
});

# ---------------------------------------------------------------------------
# helpers

# The shard id of a key.
sub shard_of
{
	my ($id) = @_;
	return $coord->safe_psql($db, "SELECT get_shard_id_for_distribution_column('msgs', $id)");
}

# The worker holding a shard.
sub node_of_shard
{
	my ($shardid) = @_;
	my $port = $coord->safe_psql($db,
		"SELECT nodeport FROM pg_dist_shard_placement WHERE shardid = $shardid");
	return $port == $w1->port ? $w1 : $w2;
}

# The first key after $after whose row goes to the given shard.
sub key_in_shard
{
	my ($shardid, $after) = @_;
	return $coord->safe_psql($db, qq{
SELECT min(g) FROM generate_series($after + 1, $after + 1000) g
WHERE get_shard_id_for_distribution_column('msgs', g) = $shardid});
}

# Insert a message whose body and out-of-line column carry a new marker;
# returns the marker.
sub add_message
{
	my ($id, $sender) = @_;
	my $mark = random_marker();
	$coord->safe_psql($db, qq{
INSERT INTO msgs (id, sender, body, big)
VALUES ($id, '$sender', 'hello $mark there', '$mark ${\ md5_chain($mark, 100)}')});
	return $mark;
}

# Recall keys through the coordinator, as their sender, in one transaction;
# returns psql's stderr (the remote commands when $log_remote).
sub recall_keys
{
	my ($table, $sender, $log_remote, @ids) = @_;
	my $ids = join(',', @ids);
	my ($rc, $out, $err) = $coord->psql(
		$db, qq{
BEGIN;
SET LOCAL recall.actor = '$sender';
SET LOCAL citus.log_remote_commands = ${\ ($log_remote ? 'on' : 'off')};
UPDATE $table SET recalled_at = now() WHERE id IN ($ids);
COMMIT;});
	die "recall of $ids failed: $err" if $rc != 0;
	is($coord->safe_psql($db,
			"SELECT count(*) FROM $table WHERE id IN ($ids) AND recalled_at IS NOT NULL AND body IS NULL"),
		scalar(@ids), "recalled through the coordinator: $table $ids");
	return $err;
}

sub heap_or_toast { return $_[0]{kind} =~ /^(heap|toast)$/ }

# Scan a shard's files on its worker until a marker is gone from the files
# the filter accepts, for at most $WAIT s; returns the seconds it took
# since $opts{since} (undef: not gone) and the last scan.
sub wait_erased
{
	my ($n, $shard, $markers, $name, $filter, %opts) = @_;
	my $t0 = $opts{since} // time;
	my $deadline = time + $WAIT;
	my $scan;
	while (1)
	{
		$scan = scan_relations($n, $db, [$shard], $markers, %opts);
		return (time - $t0, $scan) if any_hits($scan, $name, $filter) == 0;
		last if time > $deadline;
		usleep(200_000);
	}
	return (undef, $scan);
}

# Wait until no pg_recall purger runs on a node (idle workers leave).
sub purger_gone
{
	my ($n) = @_;
	return $n->poll_query_until($db,
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_recall purger'");
}

# ---------------------------------------------------------------------------
# 1. a single-shard recall, erased on its worker by the worker's own purger
#    and rebuilder

my $sid   = shard_of(1001);
my $wx    = node_of_shard($sid);
my $shard = $coord->safe_psql($db, "SELECT shard_name('msgs', $sid)");
my $ctl   = key_in_shard($sid, 1001);
my %mk    = (R => add_message(1001, 'alice'), C => add_message($ctl, 'bob'));
my $toast = $wx->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = '$shard'::regclass");
my @shard_idx = split /\n/, $wx->safe_psql($db, qq{
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$shard'::regclass
AND indexrelid::regclass::text ~ '^msgs_(body|tsv)_idx' ORDER BY 1});
is(scalar(@shard_idx), 2, "the shard $shard has its two content indexes on " . $wx->name)
  or diag "@shard_idx";

my $scan = scan_relations($wx, $db, [$shard], \%mk);
my @before = @{ $scan->{files} };
foreach my $re (qr/^\Q$shard\E$/, qr/^\Q$toast\E$/, map { qr/^\Q$_\E$/ } @shard_idx)
{
	ok(found_in($scan, 'R', $re), "before the recall the marker is in $re");
}

ok(purger_gone($wx), 'no purger runs on the worker before the recall');
recall_keys('msgs', 'alice', 0, 1001);
my $committed = time;

is($wx->safe_psql($db, q{
SELECT e.tbl::text || ' ' || e.residue[1]::regclass::text || ' ' || e.residue[3]::regclass::text
FROM recall.events e WHERE e.pk->>'id' = '1001'}),
	"msgs $shard $toast",
	'the worker\'s event names the logical table; its residue the shard and the shard\'s TOAST relation');

my ($took, $scan1) = wait_erased($wx, $shard, \%mk, 'R', \&heap_or_toast, since => $committed);
ok(defined $took, 'the worker\'s purger erased the text from the shard\'s heap and TOAST files')
  or diag hit_report($scan1, 'R');
diag sprintf('single-shard recall: %.2f s from commit to no hit in the shard\'s heap and TOAST (purge_delay 1s)', $took)
  if defined $took;

ok( $wx->poll_query_until(
		$db, qq{
SELECT count(*) = 2 FROM recall.index_state s
WHERE s.tbl = 'msgs'::regclass AND s.last_rebuild IS NOT NULL AND s.dirty_since IS NULL
  AND s.indexrelid::regclass::text IN ('$shard_idx[0]', '$shard_idx[1]')}),
	'the worker\'s rebuilder rebuilt the shard\'s two content indexes')
  or diag $wx->safe_psql($db, 'SELECT indexrelid::regclass, tbl, dirty_since, last_rebuild, last_error FROM recall.index_state');
is($wx->safe_psql($db, q{
SELECT count(*) FROM recall.index_state s
WHERE s.indexrelid::regclass::text !~ '^msgs_(body|tsv)_idx_[0-9]+$'}),
	'0', 'only shard indexes were marked (not the shell\'s)');
is($wx->safe_psql($db, qq{
SELECT count(*) FROM pg_index i WHERE i.indrelid = '$shard'::regclass AND NOT i.indisvalid}),
	'0', 'no invalid index left on the shard');
($took, $scan1) = wait_erased($wx, $shard, \%mk, 'R', undef, since => $committed, extra => \@before);
ok(defined $took, 'no file of the shard (heap, TOAST, every index, the files before the rebuild) holds the recalled text')
  or diag hit_report($scan1, 'R');
diag sprintf('single-shard recall: %.2f s from commit to no hit in any file of the shard (index_rebuild_interval 0)', $took)
  if defined $took;
ok(found_in($scan1, 'C', qr/^\Q$shard\E$/) && found_in($scan1, 'C', qr/^\Q$toast\E$/),
	'the control message is still in the shard\'s heap and TOAST');

is($wx->safe_psql($db, 'SELECT tbl::text FROM recall.purge_state'),
	'msgs', 'the worker\'s purge position is kept for the logical table');
{
	local $ENV{PGOPTIONS} = '';
	is($wx->safe_psql($db,
			q{SELECT tbl::text || ' ' || pending_recalls FROM recall.purge_status WHERE index IS NULL}),
		'msgs 0', 'recall.purge_status on the worker lists the table, nothing pending');
	is($wx->safe_psql($db,
			q{SELECT string_agg(index::text, ',' ORDER BY index::text) FROM recall.purge_status WHERE index IS NOT NULL}),
		join(',', sort @shard_idx),
		'... and the shard\'s content indexes, in an ordinary session too');
}

# ---------------------------------------------------------------------------
# 2. recall.purge() on the worker

foreach my $w ($w1, $w2)
{
	$w->safe_psql($db, 'ALTER SYSTEM SET recall.purge_delay = 0; SELECT pg_reload_conf()');
	$w->poll_query_until($db, "SELECT setting = '0' FROM pg_settings WHERE name = 'recall.purge_delay'");
}
my $id2 = key_in_shard($sid, $ctl);
my %mk2 = (R => add_message($id2, 'alice'));
recall_keys('msgs', 'alice', 0, $id2);
$scan = scan_relations($wx, $db, [$shard], \%mk2);
ok(any_hits($scan, 'R', \&heap_or_toast) > 0, 'with the automatic purge off, the text stays after the recall');
my @rows = purge_done($wx, $db, 'msgs');
is( join(',', sort map { "$_->[0]:$_->[1]" } grep { $_->[1] ne 'deferred' } @rows),
	join(',', sort("$shard:heap", "$toast:toast", map { "$_:index" } @shard_idx)),
	'recall.purge() on the worker visits the shard\'s heap and TOAST and reports its content indexes')
  or diag explain \@rows;
$scan = scan_relations($wx, $db, [$shard], \%mk2);
is(any_hits($scan, 'R', \&heap_or_toast), 0, 'and the shard\'s heap and TOAST no longer hold the text')
  or diag hit_report($scan, 'R');

# ---------------------------------------------------------------------------
# 3. a multi-shard recall with two-phase commit starts both workers' purgers

foreach my $w ($w1, $w2)
{
	$w->safe_psql($db, 'ALTER SYSTEM RESET recall.purge_delay; SELECT pg_reload_conf()');
	$w->poll_query_until($db, "SELECT setting = '1000' FROM pg_settings WHERE name = 'recall.purge_delay'");
}
# one message in each shard
my @shards = split /\n/, $coord->safe_psql($db,
	"SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'msgs'::regclass ORDER BY shardid");
my (%multi, @ids);
my $after = 2000;
foreach my $s (@shards)
{
	my $id = key_in_shard($s, $after);
	$multi{$s} = { id => $id, mark => add_message($id, 'alice') };
	push @ids, $id;
	$after = $id;
}
my %on = map { (node_of_shard($_)->name => 1) } @shards;
is(scalar(keys %on), 2, 'the messages are on both workers');
ok(purger_gone($w1) && purger_gone($w2), 'no purger runs on either worker');
my $remote = recall_keys('msgs', 'alice', 1, @ids);
$committed = time;
like($remote, qr/COMMIT PREPARED/, 'the recall committed with two-phase commit');
foreach my $s (@shards)
{
	my $n    = node_of_shard($s);
	my $name = $coord->safe_psql($db, "SELECT shard_name('msgs', $s)");
	my ($t, $sc) = wait_erased($n, $name, { R => $multi{$s}{mark} }, 'R', \&heap_or_toast,
		since => $committed);
	ok(defined $t, "after COMMIT PREPARED, $name on " . $n->name . ' is erased by its purger')
	  or diag hit_report($sc, 'R');
	diag sprintf('multi-shard recall: %.2f s from commit to no hit in %s\'s heap and TOAST', $t, $name)
	  if defined $t;
}

# ---------------------------------------------------------------------------
# 4. the sweep visits the shards

my $eid = key_in_shard($sid, 3000);
my $E   = random_marker();
$coord->safe_psql($db, qq{
INSERT INTO msgs (id, sender, body) VALUES ($eid, 'alice', 'draft $E draft');
UPDATE msgs SET body = 'final text' WHERE id = $eid;});
$scan = scan_relations($wx, $db, [$shard], { E => $E });
ok(any_hits($scan, 'E', sub { $_[0]{kind} eq 'heap' }) > 0, 'an edited message\'s earlier version is in the shard\'s heap');
foreach my $w ($w1, $w2)
{
	$w->safe_psql($db, "ALTER SYSTEM SET recall.sweep_interval = '1d'; SELECT pg_reload_conf()");
}
foreach my $w ($w1, $w2)
{
	my $local = $w->safe_psql($db, q{
SELECT string_agg(r::text, ',' ORDER BY r::text) FROM (
    SELECT to_regclass(shard_name(s.logicalrelid, s.shardid)) AS r
    FROM pg_dist_shard s JOIN pg_dist_placement p ON p.shardid = s.shardid
    WHERE s.logicalrelid = 'msgs'::regclass
      AND p.groupid = (SELECT groupid FROM pg_dist_local_group)) x});
	my $n = scalar(split /,/, $local);
	ok($n > 0, $w->name . " holds shards $local");
	ok( $w->poll_query_until(
			$db, qq{
SELECT count(*) = 2 * $n FROM recall.sweep_state w JOIN pg_class c ON c.oid = w.relid
WHERE w.tbl = 'msgs'::regclass AND w.last_sweep IS NOT NULL
  AND (c.oid::regclass::text = ANY (string_to_array('$local', ','))
       OR c.oid IN (SELECT reltoastrelid FROM pg_class
                    WHERE oid::regclass::text = ANY (string_to_array('$local', ',')))) }),
		$w->name . ': the sweep visited each local shard and its TOAST relation')
	  or diag $w->safe_psql($db, 'SELECT relid::regclass, tbl, last_lsn, last_sweep FROM recall.sweep_state');
}
$scan = scan_relations($wx, $db, [$shard], { E => $E });
is(any_hits($scan, 'E', sub { $_[0]{kind} eq 'heap' }), 0,
	'the sweep erased the earlier version from the shard\'s heap')
  or diag hit_report($scan, 'E');

# ---------------------------------------------------------------------------
# 5. a partitioned distributed table: the shard of the recalled row's
#    partition, its content index, its sweep

$coord->safe_psql(
	$db, q{
CREATE TABLE pm (id bigint, day int, sender text NOT NULL, body text, PRIMARY KEY (id, day))
    PARTITION BY RANGE (day);
CREATE TABLE pm_1 PARTITION OF pm FOR VALUES FROM (0) TO (10);
CREATE TABLE pm_2 PARTITION OF pm FOR VALUES FROM (10) TO (20);
CREATE INDEX pm_body_idx ON pm (body);
SELECT create_distributed_table('pm', 'id', shard_count => 2);
INSERT INTO pm SELECT g, g % 20, 'carol', 'filler ' || md5(g::text) FROM generate_series(1, 100) g;
SELECT recall.enable('pm', content => '{body}', sender => 'sender');
});
my $P = random_marker();
$coord->safe_psql($db, "INSERT INTO pm VALUES (500, 15, 'alice', 'hello $P there')");
my $psid   = $coord->safe_psql($db, "SELECT get_shard_id_for_distribution_column('pm_2', 500)");
my $pshard = $coord->safe_psql($db, "SELECT shard_name('pm_2', $psid)");
my $pw     = node_of_shard($psid);
my $pidx   = $pw->safe_psql($db,
	"SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '$pshard'::regclass AND indexrelid::regclass::text ~ '^pm_2_body_idx'");
$scan = scan_relations($pw, $db, [$pshard], { P => $P });
ok(found_in($scan, 'P', qr/^\Q$pshard\E$/) && found_in($scan, 'P', qr/^\Q$pidx\E$/),
	"before the recall the marker is in the partition's shard $pshard and its index $pidx");
@before = @{ $scan->{files} };
recall_keys('pm', 'alice', 0, 500);
$committed = time;
is($pw->safe_psql($db, q{
SELECT e.tbl::text || ' ' || e.residue[1]::regclass::text FROM recall.events e
WHERE e.tbl = 'pm'::regclass AND e.pk->>'id' = '500'}),
	"pm $pshard", 'the event names the partitioned table, its residue the partition\'s shard');
ok( $pw->poll_query_until(
		$db, qq{
SELECT count(*) = 1 FROM recall.index_state s
WHERE s.tbl = 'pm'::regclass AND s.last_rebuild IS NOT NULL AND s.dirty_since IS NULL
  AND s.indexrelid::regclass::text = '$pidx'}),
	"the worker's rebuilder rebuilt $pidx");
($took, $scan1) = wait_erased($pw, $pshard, { P => $P }, 'P', undef, since => $committed,
	extra => \@before);
ok(defined $took, "no file of $pshard holds the recalled text")
  or diag hit_report($scan1, 'P');
ok( $pw->poll_query_until(
		$db, qq{
SELECT count(*) = 2 FROM recall.sweep_state w
WHERE w.tbl = 'pm'::regclass AND w.last_sweep IS NOT NULL
  AND w.relid IN ('$pshard'::regclass, (SELECT reltoastrelid FROM pg_class WHERE oid = '$pshard'::regclass))}),
	"the sweep visited $pshard and its TOAST relation")
  or diag $pw->safe_psql($db, 'SELECT relid::regclass, tbl, last_lsn, last_sweep FROM recall.sweep_state');

foreach my $n ($coord, $w1, $w2)
{
	unlike(slurp_file($n->logfile), qr/TRAP|terminated by signal|PANIC/,
		$n->name . ': no crash in the server log');
}
$_->stop foreach ($w2, $w1, $coord);
done_testing();
