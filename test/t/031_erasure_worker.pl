# Copyright (c) pg_recall authors
#
# 031_erasure_worker.pl
#	  The workers purge by themselves (pg_recall in shared_preload_libraries,
#	  recall.purge_delay = 2s, recall.index_rebuild_interval = 0: the
#	  purger scrubs the heap and TOAST pages, the rebuilder rebuilds the
#	  content indexes): nobody calls recall.purge(), yet within
#	  purge_delay plus a few seconds of the recall's commit no file of the
#	  table (heap, TOAST, btree, GIN, GiST) holds a byte of the recalled
#	  text, while the control message is still found.  With purge_delay = 0
#	  nothing is purged.  The time from the recall's commit to the first
#	  scan with no hit (CHECKPOINT then read the files, every 100 ms) is
#	  measured five times; the median is printed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use ForensicScan;
use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $DELAY = 2;        # recall.purge_delay, seconds
my $SLACK = 8;        # the few seconds allowed beyond it
my $RUNS  = 5;

my $node = PostgreSQL::Test::Cluster->new('erasure_worker');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = '${DELAY}s'
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
});
$node->start;

my $db = 'postgres';
$node->safe_psql(
	$db, q{
CREATE EXTENSION pg_recall;
CREATE EXTENSION pg_trgm;
CREATE TABLE m (id int PRIMARY KEY, sender text, body text, big text, tsv tsvector);
ALTER TABLE m ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX m_body_idx ON m (body);
CREATE INDEX m_tsv_idx ON m USING gin (tsv);
CREATE INDEX m_trgm_idx ON m USING gist (body gist_trgm_ops);
SELECT recall.enable('m', '{body,big,tsv}', sender => 'sender');
});
install_residue_helpers($node, $db);
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_recall dispatcher'"
	),
	'the dispatcher runs');

my $m_toast = $node->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'm'::regclass");

# Insert a recalled-to-be message and a control; return their markers.
my $next_id = 1;
sub add_pair
{
	my %mk;
	foreach my $who (qw(R C))
	{
		my $mark   = random_marker();
		my $body   = "$mark " . md5_hex("${mark}body");
		my $id     = $next_id++;
		my $sender = $who eq 'R' ? 'alice' : 'bob';
		$node->safe_psql(
			$db, qq{
INSERT INTO m VALUES ($id, '$sender', '$body', '$mark ${\ md5_chain($mark, 100)}',
                      to_tsvector('simple', '$body'))});
		$mk{$who}         = $mark;
		$mk{"${who}_trgm"} = trgm_bytes($node, $db, "'$body'");
		$mk{"${who}_id"}   = $id;
	}
	return \%mk;
}

sub markers_of
{
	my ($mk) = @_;
	return { map { $_ => $mk->{$_} } qw(R C R_trgm C_trgm) };
}

# Every place the text is stored, for a marker pair.
sub all_found
{
	my ($scan, $who) = @_;
	my @missing;
	foreach my $re (qr/^m$/, qr/^\Q$m_toast\E$/, qr/^m_body_idx$/,
		qr/^m_tsv_idx$/)
	{
		push @missing, "$re" unless found_in($scan, $who, $re);
	}
	push @missing, 'm_trgm_idx'
	  unless found_in($scan, "${who}_trgm", qr/^m_trgm_idx$/);
	return @missing;
}

sub nothing_of
{
	my ($scan, $who) = @_;
	return total_hits($scan, $who, 'exact') + total_hits($scan, $who, 'ci') +
	  total_hits($scan, $who, 'frag') +
	  total_hits($scan, "${who}_trgm", 'exact') +
	  total_hits($scan, "${who}_trgm", 'frag') == 0;
}

sub recall
{
	my ($id) = @_;
	recall_with_residue($node, $db, 'm', [$id],
		"SET LOCAL recall.actor = 'alice'; SELECT recall.recall('m', $id)");
}

# ---------------------------------------------------------------------------
# purge_delay = 0: automatic purging off

$node->safe_psql($db, "ALTER SYSTEM SET recall.purge_delay = 0");
$node->reload;
sleep 1;    # the dispatcher has read the new setting
my $mk = add_pair();
recall($mk->{R_id});
sleep $DELAY + 2;
my $scan = scan_relations($node, $db, ['m'], markers_of($mk));
my @missing = all_found($scan, 'R');
ok(!@missing, 'with purge_delay = 0 the recalled text stays in every file')
  or diag "not found in: @missing";
is($node->safe_psql($db, 'SELECT count(*) FROM recall.purge_state WHERE purged_at IS NOT NULL'),
	'0', 'and nothing is recorded as purged');

$node->safe_psql($db, "ALTER SYSTEM RESET recall.purge_delay");
$node->reload;
ok( $node->poll_query_until(
		$db,
		"SELECT setting FROM pg_settings WHERE name = 'recall.purge_delay'",
		$DELAY * 1000),
	'purge_delay is back to its setting');
my $t0 = time;
my $done = 0;
while (time < $t0 + $DELAY + $SLACK)
{
	$scan = scan_relations($node, $db, ['m'], markers_of($mk));
	if (nothing_of($scan, 'R')) { $done = 1; last; }
	usleep(100_000);
}
ok($done, 'once purge_delay is set again, the pending recall is purged')
  or diag hit_report($scan, 'R');

# ---------------------------------------------------------------------------
# the measured runs

my @times;
for my $run (1 .. $RUNS)
{
	$mk = add_pair();
	$scan = scan_relations($node, $db, ['m'], markers_of($mk));
	@missing = (all_found($scan, 'R'), all_found($scan, 'C'));
	ok(!@missing, "run $run: before the recall both messages are found in every file")
	  or diag "not found in: @missing";

	recall($mk->{R_id});
	my $committed = time;
	my $elapsed;
	while (time < $committed + $DELAY + $SLACK)
	{
		$scan = scan_relations($node, $db, ['m'], markers_of($mk));
		if (nothing_of($scan, 'R'))
		{
			$elapsed = time - $committed;
			last;
		}
		usleep(100_000);
	}
	ok(defined $elapsed,
		"run $run: without recall.purge(), nothing of the recalled text within "
		  . ($DELAY + $SLACK) . " s")
	  or diag hit_report($scan, 'R') . "\n" . hit_report($scan, 'R_trgm');
	# the rebuilder may be swapping a rebuilt index in while the files are
	# read (its new pages are not on disk before the next checkpoint): the
	# control is looked for once the rebuilds are over
	wait_rebuilt($node, $db, 'm');
	$scan = scan_relations($node, $db, ['m'], markers_of($mk));
	@missing = all_found($scan, 'C');
	ok(!@missing, "run $run: the control is still found in every file")
	  or diag "not found in: @missing";
	push @times, $elapsed if defined $elapsed;
	note sprintf('run %d: %.2f s from commit to no hit', $run, $elapsed)
	  if defined $elapsed;
}

ok($node->safe_psql($db,
		"SELECT xid >= (SELECT max(xid) FROM recall.events) FROM recall.purge_state WHERE tbl = 'm'::regclass") eq 't',
	'the dispatcher recorded its purges');
my $log = slurp_file($node->logfile);
unlike($log, qr/TRAP|terminated by signal|PANIC/, 'no crash in the server log');

if (@times == $RUNS)
{
	my @s = sort { $a <=> $b } @times;
	diag sprintf(
		'time from recall commit to 0 hits with the worker (purge_delay %ds): median %.2f s of %d runs (%s)',
		$DELAY, $s[ int($RUNS / 2) ], $RUNS,
		join(', ', map { sprintf '%.2f', $_ } @times));
}

$node->stop;
done_testing();
