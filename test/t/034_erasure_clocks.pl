# Copyright (c) pg_recall authors
#
# 034_erasure_clocks.pl
#	  The three clocks of erasure, each proven by a forensic scan of the
#	  relation files (ForensicScan.pm), with the workers only (nobody calls
#	  recall.purge()):
#	  1. recall.purge_delay (2s): within the delay (and a few seconds of
#	     slack) of the recall's commit, the heap and TOAST files hold no
#	     byte of the recalled text, while, with index rebuilds off
#	     (recall.index_rebuild_interval = -1), the btree and the GIN index
#	     still do; recall.purge_status shows the indexes dirty, with no
#	     rebuild planned;
#	  2. recall.index_rebuild_interval = 0 (set by a reload): the rebuilder
#	     rebuilds them with REINDEX CONCURRENTLY, and no index file holds
#	     the text; the indexes keep their names and are valid;
#	  3. recall.sweep_interval = 1s (set by a reload): an edited message's
#	     earlier version, which no recall recorded, leaves no byte in the
#	     heap and TOAST files after a sweep; recall.sweep_state and
#	     recall.purge_status show the sweep.
#	  Then a REINDEX CONCURRENTLY that waits behind a writer's open
#	  transaction is cancelled: within a purger cycle of the writer's
#	  commit no invalid index is left, the index keeps its name and is
#	  valid, and the rebuild is tried again and succeeds.

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

my $DELAY = 2;    # recall.purge_delay, seconds
my $SLACK = 10;   # the few seconds allowed beyond a clock

my $node = PostgreSQL::Test::Cluster->new('erasure_clocks');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = '${DELAY}s'
recall.index_rebuild_interval = -1
recall.sweep_interval = -1
});
$node->start;

my $db = 'postgres';
$node->safe_psql(
	$db, q{
CREATE EXTENSION pg_recall;
CREATE TABLE m (id int PRIMARY KEY, sender text, body text, big text, tsv tsvector);
ALTER TABLE m ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX m_body_idx ON m (body);
CREATE INDEX m_tsv_idx ON m USING gin (tsv);
SELECT recall.enable('m', '{body,big,tsv}', sender => 'sender');
INSERT INTO m (id, sender, body, big, tsv)
SELECT i, 'carol', md5(i::text) || ' filler', repeat(md5(i::text), 80),
       to_tsvector('simple', md5(i::text) || ' filler')
FROM generate_series(1, 200) i;
});
install_residue_helpers($node, $db);
my $m_toast = $node->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'm'::regclass");

# Insert a message with a random marker in every content column.
sub add_message
{
	my ($id, $sender) = @_;
	my $mark = random_marker();
	my $body = "$mark " . md5_hex("${mark}body");
	$node->safe_psql(
		$db, qq{
INSERT INTO m VALUES ($id, '$sender', '$body', '$mark ${\ md5_chain($mark, 100)}',
                      to_tsvector('simple', '$body'))});
	return $mark;
}

sub hits
{
	my ($scan, $name, $filter) = @_;
	return total_hits($scan, $name, 'exact', $filter) +
	  total_hits($scan, $name, 'ci',   $filter) +
	  total_hits($scan, $name, 'frag', $filter);
}

my $in_heap  = sub { $_[0]{kind} =~ /^(heap|toast)/ };
my $in_index = sub { $_[0]{kind} =~ /^index/ };

# Scan m until $done->($scan) or the deadline; returns (seconds, scan).
sub scan_until
{
	my ($markers, $secs, $done, %opts) = @_;
	my $t0 = time;
	my $scan;
	while (1)
	{
		$scan = scan_relations($node, $db, ['m'], $markers, %opts);
		return (time - $t0, $scan) if $done->($scan);
		return (undef, $scan) if time > $t0 + $secs;
		usleep(200_000);
	}
}

sub setting
{
	my ($name, $value) = @_;
	$node->safe_psql($db, "ALTER SYSTEM SET $name = '$value'; SELECT pg_reload_conf()");
	$node->poll_query_until($db,
		"SELECT setting = '$value' OR '$value' LIKE setting || '%' FROM pg_settings WHERE name = '$name'")
	  or die "$name did not become $value";
}

# ---------------------------------------------------------------------------
# clock 1: heap and TOAST within purge_delay; the indexes wait for clock 2

my %mk = (R => add_message(1001, 'alice'), C => add_message(1002, 'bob'));
my $scan = scan_relations($node, $db, ['m'], \%mk);
foreach my $who (qw(R C))
{
	ok(found_in($scan, $who, qr/^m$/) && found_in($scan, $who, qr/^\Q$m_toast\E$/)
		  && found_in($scan, $who, qr/^m_body_idx$/) && found_in($scan, $who, qr/^m_tsv_idx$/),
		"before the recall $who is in the heap, TOAST, btree and GIN files")
	  or diag hit_report($scan, $who);
}
my @before = @{ $scan->{files} };

recall_with_residue($node, $db, 'm', [1001],
	"SET LOCAL recall.actor = 'alice'; SELECT recall.recall('m', 1001)");
my ($elapsed, $after) = scan_until(\%mk, $DELAY + $SLACK,
	sub { hits($_[0], 'R', $in_heap) == 0 }, extra => \@before);
ok(defined $elapsed,
	"clock 1: the heap and TOAST files hold nothing of the recalled text within "
	  . ($DELAY + $SLACK) . " s of the recall")
  or diag hit_report($after, 'R');
note sprintf('clock 1: %.2f s from commit to no heap or TOAST hit (purge_delay %ds)',
	$elapsed, $DELAY)
  if defined $elapsed;
ok(found_in($after, 'R', qr/^m_body_idx$/) && found_in($after, 'R', qr/^m_tsv_idx$/),
	'with rebuilds off, the btree and GIN files still hold the recalled text')
  or diag hit_report($after, 'R');
ok(found_in($after, 'C', qr/^(m|\Q$m_toast\E)$/), 'the control is still in the heap');
is( $node->safe_psql(
		$db,
		"SELECT string_agg(index::text || ':' || (dirty_since IS NOT NULL) || ':' || coalesce(next_rebuild::text, '-'), ','"
		  . " ORDER BY index::text) FROM recall.purge_status WHERE tbl = 'm'::regclass AND index IS NOT NULL"
	),
	'm_body_idx:true:-,m_tsv_idx:true:-',
	'recall.purge_status: both content indexes dirty, no rebuild planned (interval -1)');
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls, last_purge IS NOT NULL FROM recall.purge_status"
		  . " WHERE tbl = 'm'::regclass AND index IS NULL"),
	'0|t',
	'recall.purge_status: no recall pending, a last purge');

# ---------------------------------------------------------------------------
# clock 2: index_rebuild_interval = 0

setting('recall.index_rebuild_interval', '0');
($elapsed, $after) = scan_until(\%mk, $SLACK,
	sub { hits($_[0], 'R') == 0 }, extra => \@before);
ok(defined $elapsed,
	'clock 2: once rebuilds are on, no file of m holds anything of the recalled text')
  or diag hit_report($after, 'R');
note sprintf('clock 2: %.2f s from the reload to no hit in any file', $elapsed)
  if defined $elapsed;
ok(found_in($after, 'C', qr/^m_body_idx$/) && found_in($after, 'C', qr/^m_tsv_idx$/),
	'the rebuilt indexes hold the control');
is( $node->safe_psql(
		$db,
		"SELECT string_agg(indexrelid::regclass::text || ':' || indisvalid, ',' ORDER BY indexrelid::regclass::text)"
		  . " FROM pg_index WHERE indrelid = 'm'::regclass"),
	'm_body_idx:true,m_pkey:true,m_tsv_idx:true',
	'the rebuilt indexes keep their names, are valid, and nothing else is left');
ok(wait_rebuilt($node, $db, 'm'), 'recall.index_state shows the indexes clean');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM recall.purge_status WHERE tbl = 'm'::regclass"
		  . " AND index IS NOT NULL AND last_rebuild IS NOT NULL AND dirty_since IS NULL"),
	'2',
	'recall.purge_status: both indexes rebuilt');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SELECT count(*) FROM m WHERE tsv @@ to_tsquery('simple', '\L$mk{C}')"),
	'1',
	'the rebuilt GIN index finds the control');

# ---------------------------------------------------------------------------
# clock 3: an edited message's earlier version, never recalled, goes with
# the sweep

my $E = add_message(1003, 'dave');
$node->safe_psql($db,
	"UPDATE m SET body = 'edited', big = 'edited', tsv = NULL WHERE id = 1003");
$scan = scan_relations($node, $db, ['m'], { E => $E });
ok(hits($scan, 'E', sub { $_[0]{kind} eq 'toast' }) > 0,
	'the edited version\'s TOAST chunks are still in the files')
  or diag hit_report($scan, 'E');
note 'edited version\'s marker in the heap file before the sweep: '
  . hits($scan, 'E', sub { $_[0]{kind} eq 'heap' });
is($node->safe_psql($db, 'SELECT count(*) FROM recall.sweep_state'),
	'0', 'no sweep ran yet (sweep_interval -1)');

setting('recall.sweep_interval', '1s');
($elapsed, $after) = scan_until({ E => $E }, $SLACK,
	sub { hits($_[0], 'E', $in_heap) == 0 });
ok(defined $elapsed,
	'clock 3: after a sweep the heap and TOAST files hold nothing of the edited version')
  or diag hit_report($after, 'E');
note sprintf('clock 3: %.2f s from the reload to no heap or TOAST hit', $elapsed)
  if defined $elapsed;
is( $node->safe_psql(
		$db,
		"SELECT count(*) FILTER (WHERE last_sweep IS NOT NULL AND last_lsn IS NOT NULL), count(*)"
		  . " FROM recall.sweep_state WHERE relid IN ('m'::regclass, '$m_toast'::regclass)"),
	'2|2',
	'recall.sweep_state: the heap and its TOAST relation were swept');
is( $node->safe_psql(
		$db,
		"SELECT last_sweep IS NOT NULL AND next_sweep > last_sweep FROM recall.purge_status"
		  . " WHERE tbl = 'm'::regclass AND index IS NULL"),
	't',
	'recall.purge_status: a last and a next sweep');
is($node->safe_psql($db, 'SELECT body, big FROM m WHERE id = 1003'),
	'edited|edited', 'the edited message reads back');
setting('recall.sweep_interval', '-1');

# ---------------------------------------------------------------------------
# a cancelled REINDEX CONCURRENTLY: no invalid index beyond a purger
# cycle, the index keeps its name, the rebuild is retried

my %ck = (R => add_message(1004, 'alice'));
# a writer's open transaction (its lock, but no xid and no snapshot, so
# that the purge is not deferred) holds REINDEX CONCURRENTLY in its wait
# for older writers
my $writer = $node->background_psql($db, on_error_stop => 1);
$writer->query_safe('BEGIN; LOCK TABLE m IN ROW EXCLUSIVE MODE');
recall_with_residue($node, $db, 'm', [1004],
	"SET LOCAL recall.actor = 'alice'; SELECT recall.recall('m', 1004)");
ok( $node->poll_query_until(
		$db, q{
SELECT count(*) > 0 FROM pg_stat_activity a
WHERE a.backend_type = 'pg_recall rebuilder' AND a.wait_event_type = 'Lock'
  AND a.query LIKE 'REINDEX INDEX CONCURRENTLY%'
  AND EXISTS (SELECT FROM pg_class c WHERE c.relname LIKE 'm\_%\_ccnew%')}),
	'the rebuilder\'s REINDEX CONCURRENTLY waits for the open writer, its new index exists');
my $rebuilding = $node->safe_psql($db,
	"SELECT substring(query FROM 'CONCURRENTLY (.*)') FROM pg_stat_activity WHERE backend_type = 'pg_recall rebuilder'");
my $log_pos = -s $node->logfile;
is( $node->safe_psql(
		$db,
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_recall rebuilder'"),
	't',
	"the REINDEX of $rebuilding is cancelled");
$writer->query_safe('COMMIT');
$writer->quit;
my $t0 = time;
ok( $node->poll_query_until(
		$db, q{
SELECT count(*) = 0 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'm'::regclass AND (NOT i.indisvalid OR c.relname LIKE '%\_cc%')}),
	'the cancelled rebuild leaves no invalid index');
my $left = time - $t0;
ok($left < $SLACK, sprintf('the leftover was gone %.1f s after the writer committed', $left));
my $log = slurp_file($node->logfile, $log_pos);
like($log, qr/could not rebuild index "\w+": canceling statement due to user request/,
	'the cancelled rebuild is logged');
like($log, qr/dropped index "m_\w+_ccnew\w*", left invalid by an interrupted rebuild/,
	'and so is the drop of its leftover');
ok(wait_rebuilt($node, $db, 'm', 60), 'the rebuild is tried again and succeeds');
is( $node->safe_psql(
		$db,
		"SELECT string_agg(indexrelid::regclass::text || ':' || indisvalid, ',' ORDER BY indexrelid::regclass::text)"
		  . " FROM pg_index WHERE indrelid = 'm'::regclass"),
	'm_body_idx:true,m_pkey:true,m_tsv_idx:true',
	'the indexes keep their names and are valid');
$scan = scan_relations($node, $db, ['m'], \%ck);
is(hits($scan, 'R'), 0, 'and no file of m holds the recalled text')
  or diag hit_report($scan, 'R');

$log = slurp_file($node->logfile);
unlike($log, qr/TRAP|terminated by signal|PANIC/, 'no crash in the server log');
$node->stop;
done_testing();
