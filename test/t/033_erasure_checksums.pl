# Copyright (c) pg_recall authors
#
# 033_erasure_checksums.pl
#	  The purge keeps a cluster with data checksums sound.  After purging
#	  recalls spread over many pages of a table with TOAST, btree, GIN and
#	  GiST indexes (m), and HOT recalls of a table whose content is not
#	  indexed (h): amcheck reports nothing (bt_index_check with
#	  heapallindexed for every btree, TOAST indexes included; verify_heapam
#	  for every heap and TOAST relation), every row reads back, by a full
#	  scan and through each index, exactly as before the purge, and
#	  pg_checksums --check (offline) finds no bad block.  Then a crash
#	  (immediate stop) right after a purge: recovery completes, and the
#	  checks, the data and the absence of the recalled text all hold.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use ForensicScan;
use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('erasure_checksums');
$node->init(extra => ['--data-checksums']);
# recall.purge() is the purge tested here; the rebuilder rebuilds at once
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = 0
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
});
$node->start;

my $db = 'postgres';
is($node->safe_psql($db, 'SHOW data_checksums'), 'on', 'data checksums are on');

my $ROWS = 2000;
my $salt = random_marker(8);

# Row i's content marker: recalled rows (i % 50 = 7 in the first batch,
# i % 50 = 9 in the second) and controls (i % 50 = 8) carry one, the
# others a filler.
# (one letter and an md5: no fragment shared between two markers)
sub marker_of { my ($i) = @_; return "Q" . md5_hex("$salt$i"); }

$node->safe_psql(
	$db, qq{
CREATE EXTENSION pg_recall;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION amcheck;
CREATE EXTENSION pageinspect;

CREATE TABLE m (id int PRIMARY KEY, sender text, body text, big text, tsv tsvector);
ALTER TABLE m ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX m_body_idx ON m (body);
CREATE INDEX m_tsv_idx ON m USING gin (tsv);
CREATE INDEX m_trgm_idx ON m USING gist (body gist_trgm_ops);
SELECT recall.enable('m', '{body,big,tsv}', sender => 'sender');
INSERT INTO m (id, sender, body, big, tsv)
SELECT i, CASE WHEN i % 50 IN (7, 9) THEN 'alice' ELSE 'carol' END, b, repeat(b, 60),
       to_tsvector('simple', b)
FROM (SELECT i, CASE WHEN i % 50 IN (7, 8, 9) THEN 'Q' || md5('$salt' || i)
                     ELSE md5(i::text) END || ' filler' AS b
      FROM generate_series(1, $ROWS) i) s;

-- content not indexed: a recall is a HOT update (fillfactor leaves room)
CREATE TABLE h (id int PRIMARY KEY, sender text, body text) WITH (fillfactor = 70);
SELECT recall.enable('h', '{body}', sender => 'sender');
INSERT INTO h SELECT i, CASE WHEN i % 50 IN (7, 9) THEN 'alice' ELSE 'carol' END,
       CASE WHEN i % 50 IN (7, 8, 9) THEN 'Q' || md5('$salt' || (i + 100000))
            ELSE md5(i::text) END || ' filler'
FROM generate_series(1, 1000) i;
VACUUM ANALYZE m, h;
});
install_residue_helpers($node, $db);

# the markers of a batch (i % 50 = $rest), for m and h
sub markers
{
	my ($rest) = @_;
	my %mk;
	for (my $i = $rest; $i <= $ROWS; $i += 50)
	{
		$mk{"m$i"} = marker_of($i);
		$mk{"h$i"} = marker_of($i + 100000) if $i <= 1000;
	}
	return \%mk;
}

sub scan_all
{
	my ($markers) = @_;
	return scan_relations($node, $db, [qw(m h)], $markers);
}

# How many markers of a set are found (whole, case-insensitively)
# anywhere, and a report of those that left anything at all.
sub leftovers
{
	my ($scan, $markers) = @_;
	my @report;
	foreach my $name (sort keys %$markers)
	{
		my $n =
		  total_hits($scan, $name, 'exact') +
		  total_hits($scan, $name, 'ci') +
		  total_hits($scan, $name, 'frag');
		push @report, hit_report($scan, $name) if $n;
	}
	return @report;
}

sub found_count
{
	my ($scan, $markers, $re) = @_;
	return scalar grep { found_in($scan, $_, $re) } keys %$markers;
}

# amcheck over every btree (its TOAST index too) and the heap and TOAST
# relation of a table; returns the number of btrees and heaps checked and
# the complaints.
sub amcheck
{
	my ($table) = @_;
	my @problems;
	my $btrees = $node->safe_psql(
		$db, qq{
SELECT i.indexrelid::regclass FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
  AND (i.indrelid = '$table'::regclass
       OR i.indrelid = (SELECT reltoastrelid FROM pg_class WHERE oid = '$table'::regclass))
ORDER BY 1});
	my @btrees = split /\n/, $btrees;
	foreach my $idx (@btrees)
	{
		my ($ret, $out, $err) =
		  $node->psql($db, "SELECT bt_index_check('$idx', true)");
		push @problems, "bt_index_check($idx): $err" if $ret != 0;
	}
	my $heaps = $node->safe_psql(
		$db, qq{
SELECT '$table'::regclass
UNION ALL
SELECT reltoastrelid::regclass FROM pg_class WHERE oid = '$table'::regclass AND reltoastrelid <> 0});
	my @heaps = split /\n/, $heaps;
	foreach my $rel (@heaps)
	{
		my ($ret, $out, $err) = $node->psql($db,
			"SELECT blkno, offnum, attnum, msg FROM verify_heapam('$rel', check_toast => true)"
		);
		push @problems, "verify_heapam($rel): " . ($ret ? $err : $out)
		  if $ret != 0 || $out ne '';
	}
	return (scalar(@btrees), scalar(@heaps), @problems);
}

sub amcheck_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($when) = @_;
	foreach my $table (qw(m h))
	{
		my ($nbt, $nheap, @problems) = amcheck($table);
		ok(!@problems,
			"amcheck of $table $when: $nbt btrees, $nheap heaps, nothing reported")
		  or diag join("\n", @problems);
	}
}

# What the tables hold, read by a full scan and through each index: each
# line a digest of the rows a plan returns.
my $readback_sql = q{
SET enable_seqscan = on; SET enable_indexscan = off; SET enable_bitmapscan = off;
SELECT 'm seq', count(*), md5(string_agg(id || sender || coalesce(body, '-') || coalesce(md5(big), '-') || coalesce(tsv::text, '-') || coalesce(recalled_by, '-'), ',' ORDER BY id)) FROM m;
SELECT 'h seq', count(*), md5(string_agg(id || sender || coalesce(body, '-') || coalesce(recalled_by, '-'), ',' ORDER BY id)) FROM h;
SET enable_seqscan = off; SET enable_indexscan = on; SET enable_sort = off;
SELECT 'm pkey', count(*), md5(string_agg(id || sender || coalesce(body, '-') || coalesce(md5(big), '-') || coalesce(tsv::text, '-') || coalesce(recalled_by, '-'), ',')) FROM (SELECT * FROM m ORDER BY id) s;
SELECT 'h pkey', count(*), md5(string_agg(id || sender || coalesce(body, '-') || coalesce(recalled_by, '-'), ',')) FROM (SELECT * FROM h ORDER BY id) s;
SELECT 'h pkey each', count(*) FROM generate_series(1, 1000) g WHERE EXISTS (SELECT FROM h WHERE id = g);
SELECT 'm btree body', count(*), md5(string_agg(id::text, ',')) FROM (SELECT id FROM m WHERE body > '' ORDER BY body) s;
SET enable_indexscan = off; SET enable_bitmapscan = on;
SELECT 'm gin', count(*) FROM m WHERE tsv @@ to_tsquery('simple', 'filler');
SELECT 'm gist', count(*) FROM m WHERE body LIKE '%filler%';
};

# The readback lines of a table (m or h).
sub readback
{
	my ($table) = @_;
	return join "\n", grep { /^\Q$table\E / }
	  split /\n/, $node->safe_psql($db, $readback_sql);
}

sub readback_ok
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($expected, $label) = @_;
	foreach my $table (qw(m h))
	{
		is(readback($table), $expected->{$table},
			"$label: every row of $table reads back as before the purge (full scan, each index)");
	}
}

sub plans_used
{
	my $plans = $node->safe_psql(
		$db, q{
SET enable_seqscan = off; SET enable_indexscan = off; SET enable_bitmapscan = on;
EXPLAIN (COSTS OFF) SELECT count(*) FROM m WHERE tsv @@ to_tsquery('simple', 'filler');
EXPLAIN (COSTS OFF) SELECT count(*) FROM m WHERE body LIKE '%filler%';
SET enable_indexscan = on; SET enable_bitmapscan = off; SET enable_sort = off;
EXPLAIN (COSTS OFF) SELECT id FROM m WHERE body > '' ORDER BY body;
EXPLAIN (COSTS OFF) SELECT * FROM h ORDER BY id;
});
	return $plans;
}
my $plans = plans_used();
like($plans, qr/m_tsv_idx/,   'the GIN read goes through m_tsv_idx');
like($plans, qr/m_trgm_idx/,  'the GiST read goes through m_trgm_idx');
like($plans, qr/m_body_idx/,  'the btree read goes through m_body_idx');
like($plans, qr/h_pkey/,      'the h read goes through h_pkey');

# ---------------------------------------------------------------------------
# first batch: recall, purge, check

my %ctl = map { ("m$_" => marker_of($_)) } grep { $_ % 50 == 8 } 1 .. $ROWS;
my $batch1 = markers(7);
my $scan = scan_all({ %$batch1, %ctl });
is(found_count($scan, \%ctl, qr/^m_body_idx$/), scalar(keys %ctl),
	'before the recall every control is found in m_body_idx');
is(found_count($scan, $batch1, qr/^(m_body_idx|h)$/), scalar(keys %$batch1),
	'before the recall every message to recall is found');

recall_with_residue($node, $db, 'm', [ map { 7 + 50 * $_ } 0 .. ($ROWS - 7) / 50 ],
	"SET LOCAL recall.actor = 'alice';"
	  . " SELECT count(recall.recall('m', i)) FROM generate_series(7, $ROWS, 50) i");
recall_with_residue($node, $db, 'h', [ map { 7 + 50 * $_ } 0 .. (1000 - 7) / 50 ],
	"SET LOCAL recall.actor = 'alice';"
	  . " SELECT count(recall.recall('h', i)) FROM generate_series(7, 1000, 50) i");
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM generate_series(0, pg_relation_size('h') / 8192 - 1) b,"
		  . " heap_page_items(get_raw_page('h', b::int)) WHERE t_infomask2 & 32768 <> 0"),
	'20',
	'the 20 recalls of h were HOT updates');

# (h's dead versions may already be gone: HOT pruning by the recalls'
# own reads compacts pages and can overwrite them)
my %batch1_m = map { $_ => $batch1->{$_} } grep { /^m/ } keys %$batch1;
$scan = scan_all({ %$batch1, %ctl });
my @before = @{ $scan->{files} };
is(found_count($scan, \%batch1_m, qr/^(m_body_idx|m_tsv_idx)$/), scalar(keys %batch1_m),
	'after the recall, before the purge, every text recalled from m is still found');
note 'texts recalled from h still in its files before the purge: '
  . found_count($scan, { map { $_ => $batch1->{$_} } grep { /^h/ } keys %$batch1 }, qr/^h$/);
my $expected = { m => readback('m'), h => readback('h') };

my @rows = purge_done($node, $db, 'm');
ok(!grep({ $_->[1] eq 'deferred' } @rows), 'm purged');
@rows = purge_done($node, $db, 'h');
ok(!grep({ $_->[1] eq 'deferred' } @rows), 'h purged');
ok(wait_rebuilt($node, $db, 'm'), 'the rebuilder rebuilt the content indexes of m');

amcheck_ok('after the purge');
readback_ok($expected, 'after the purge');

$scan = scan_relations($node, $db, [qw(m h)], { %$batch1, %ctl },
	extra => \@before);
my @left = leftovers($scan, $batch1);
ok(!@left, 'after the purge nothing of the ' . scalar(keys %$batch1)
	  . ' recalled texts in any file')
  or diag join("\n", @left);
is(found_count($scan, \%ctl, qr/^m_body_idx$/), scalar(keys %ctl),
	'after the purge every control is still found in m_body_idx');

# pg_checksums, offline
$node->stop;
command_ok([ 'pg_checksums', '--check', '-D', $node->data_dir ],
	'pg_checksums --check after the purge');
$node->start;

# ---------------------------------------------------------------------------
# second batch: a crash right after the purge

my $batch2 = markers(9);
recall_with_residue($node, $db, 'm', [ map { 9 + 50 * $_ } 0 .. ($ROWS - 9) / 50 ],
	"SET LOCAL recall.actor = 'alice';"
	  . " SELECT count(recall.recall('m', i)) FROM generate_series(9, $ROWS, 50) i");
recall_with_residue($node, $db, 'h', [ map { 9 + 50 * $_ } 0 .. (1000 - 9) / 50 ],
	"SET LOCAL recall.actor = 'alice';"
	  . " SELECT count(recall.recall('h', i)) FROM generate_series(9, 1000, 50) i");
my %batch2_m = map { $_ => $batch2->{$_} } grep { /^m/ } keys %$batch2;
$scan = scan_all({ %$batch2, %ctl });
@before = @{ $scan->{files} };
is(found_count($scan, \%batch2_m, qr/^(m_body_idx|m_tsv_idx)$/), scalar(keys %batch2_m),
	'second batch recalled, before the purge: every text recalled from m is still found');
$expected = { m => readback('m'), h => readback('h') };

@rows = purge_done($node, $db, 'm');
ok(!grep({ $_->[1] eq 'deferred' } @rows), 'm purged again');
@rows = purge_done($node, $db, 'h');
ok(!grep({ $_->[1] eq 'deferred' } @rows), 'h purged again');
ok(wait_rebuilt($node, $db, 'm'), 'the rebuilder rebuilt the content indexes of m again');
# what is on disk now, without a checkpoint: the purged pages may not be
# written yet, and then only recovery (their full page images) scrubs them
$scan = scan_relations($node, $db, [qw(m h)], \%batch2_m, checkpoint => 0);
my $on_disk = found_count($scan, \%batch2_m, qr/./);
ok($on_disk > 0,
	"at the crash $on_disk purged texts are still in the files on disk (recovery must scrub them)");
$node->stop('immediate');
$node->start;
my $log = slurp_file($node->logfile);
like($log, qr/database system was not properly shut down; automatic recovery in progress/,
	'the restart after the crash ran crash recovery');
like($log, qr/redo done at/, 'and redo completed');
unlike($log, qr/PANIC|invalid page|checksum verification failed|terminated by signal/,
	'no PANIC, bad page or checksum failure in the log');

amcheck_ok('after the crash');
readback_ok($expected, 'after the crash');
$scan = scan_relations($node, $db, [qw(m h)], { %$batch1, %$batch2, %ctl },
	extra => \@before);
@left = leftovers($scan, { %$batch1, %$batch2 });
ok(!@left, 'after the crash nothing of the recalled texts in any file')
  or diag join("\n", @left);
is(found_count($scan, \%ctl, qr/^m_body_idx$/), scalar(keys %ctl),
	'after the crash every control is still found');
is($node->safe_psql($db, 'SELECT count(*) FROM recall.purge(NULL)'),
	'0', 'the crash lost no purge record (nothing left to purge)');

$node->stop;
command_ok([ 'pg_checksums', '--check', '-D', $node->data_dir ],
	'pg_checksums --check after the crash');

done_testing();
