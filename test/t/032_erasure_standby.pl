# Copyright (c) pg_recall authors
#
# 032_erasure_standby.pl
#	  A streaming standby loses the recalled bytes too: the purge's pages
#	  reach it through WAL (full page images), so after the primary's purge,
#	  a CHECKPOINT there, replay and a restartpoint on the standby, no file
#	  of the standby's copy of the table (heap, TOAST, btree, GIN, GiST)
#	  holds a byte of the recalled text, and the standby's earlier files of
#	  the rebuilt indexes are gone or empty; the control message is still
#	  found, and reads back on the standby.  recall.purge() refuses to run
#	  on the standby.  A standby query whose snapshot predates the recall
#	  either still reads the old text or is cancelled by a recovery
#	  conflict; it never reads the scrubbed tuple.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use ForensicScan;
use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('erasure_primary');
$primary->init(allows_streaming => 1);
# recall.purge() is the purge tested here; the rebuilder rebuilds at once
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = 0
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
});
$primary->start;

my $db = 'postgres';
$primary->safe_psql(
	$db, q{
CREATE EXTENSION pg_recall;
CREATE EXTENSION pg_trgm;
CREATE TABLE m (id int PRIMARY KEY, sender text, body text, big text, tsv tsvector);
ALTER TABLE m ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX m_body_idx ON m (body);
CREATE INDEX m_tsv_idx ON m USING gin (tsv);
CREATE INDEX m_trgm_idx ON m USING gist (body gist_trgm_ops);
SELECT recall.enable('m', '{body,big,tsv}', sender => 'sender');
INSERT INTO m (id, sender, body, big, tsv)
SELECT i, 'carol', md5(i::text) || ' filler', repeat(md5(i::text), 80),
       to_tsvector('simple', md5(i::text) || ' filler')
FROM generate_series(1, 30) i;
});
install_residue_helpers($primary, $db);

# the standby, from a base backup taken before the messages exist
$primary->backup('bkp');
my $standby = PostgreSQL::Test::Cluster->new('erasure_standby');
$standby->init_from_backup($primary, 'bkp', has_streaming => 1);
# a query the purge conflicts with is cancelled after 2 s, not 30
$standby->append_conf('postgresql.conf', "max_standby_streaming_delay = 2s\n");
$standby->start;

my %mk;
foreach my $who (qw(R C))
{
	my $mark   = random_marker();
	my $body   = "$mark " . md5_hex("${mark}body");
	my $id     = $who eq 'R' ? 5001 : 5002;
	my $sender = $who eq 'R' ? 'alice' : 'bob';
	$primary->safe_psql(
		$db, qq{
INSERT INTO m VALUES ($id, '$sender', '$body', '$mark ${\ md5_chain($mark, 100)}',
                      to_tsvector('simple', '$body'))});
	$mk{$who} = $mark;
	$mk{"${who}_tail"} = md5_hex("${mark}90");
	$mk{"${who}_trgm"} = trgm_bytes($primary, $db, "'$body'");
}

my $m_toast = $primary->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'm'::regclass");
my %where = (
	heap  => qr/^m$/,
	toast => qr/^\Q$m_toast\E$/,
	btree => qr/^m_body_idx$/,
	gin   => qr/^m_tsv_idx$/);

# Make the standby's files current: checkpoint on the primary, replay,
# restartpoint on the standby.  Then scan them.
sub standby_scan
{
	my (%opts) = @_;
	$primary->safe_psql($db, 'CHECKPOINT');
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	$standby->safe_psql($db, 'CHECKPOINT');
	return scan_relations($standby, $db, ['m'], \%mk, %opts,
		checkpoint => 0);
}

sub found
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($scan, $name, $re, $label) = @_;
	ok(found_in($scan, $name, $re), "$label: $name found in $re")
	  or diag hit_report($scan, $name);
}

my $scan = standby_scan();
ok(@{ $scan->{files} } >= 7 && !grep({ !$_->{exists} } @{ $scan->{files} }),
	'the standby\'s files of m (heap, TOAST and its index, 4 indexes) were read ('
	  . scalar(@{ $scan->{files} }) . ' files)');
foreach my $who (qw(R C))
{
	found($scan, $who, $where{$_}, 'standby before the recall')
	  for qw(heap toast btree gin);
	found($scan, "${who}_tail", $where{toast},      'standby before the recall');
	found($scan, "${who}_trgm", qr/^m_trgm_idx$/,   'standby before the recall');
}

recall_with_residue($primary, $db, 'm', [5001],
	"SET LOCAL recall.actor = 'alice'; SELECT recall.recall('m', 5001)");
$scan = standby_scan();
my @before = @{ $scan->{files} };
found($scan, 'R', $where{$_}, 'standby after the recall, before the purge')
  for qw(heap toast btree gin);
found($scan, 'R_trgm', qr/^m_trgm_idx$/,
	'standby after the recall, before the purge');

# recall.purge() is for the primary
{
	my ($ret, $out, $err) =
	  $standby->psql($db, "\\set VERBOSITY verbose\nSELECT * FROM recall.purge('m')");
	like($err, qr/ERROR:\s+55000: recovery is in progress/,
		'recall.purge() refuses to run on the standby');
}

my @rows = purge_done($primary, $db, 'm');
ok(!grep({ $_->[1] eq 'deferred' } @rows), 'the primary purged m')
  or diag explain \@rows;
ok(wait_rebuilt($primary, $db, 'm'), 'the primary\'s rebuilder rebuilt the content indexes of m');

$scan = standby_scan(extra => \@before);
ok(!grep({ !$_->{exists} && $_->{kind} !~ /earlier/ } @{ $scan->{files} }),
	'the standby\'s files of m after the purge were read ('
	  . scalar(@{ $scan->{files} }) . ' files)');
foreach my $name (qw(R R_tail R_trgm))
{
	my $n =
	  total_hits($scan, $name, 'exact') +
	  total_hits($scan, $name, 'ci') +
	  total_hits($scan, $name, 'frag');
	ok($n == 0, "standby after the purge: nothing of $name in any file")
	  or diag hit_report($scan, $name);
}
found($scan, 'C', $where{$_}, 'standby after the purge')
  for qw(heap toast btree gin);
found($scan, 'C_tail', $where{toast},    'standby after the purge');
found($scan, 'C_trgm', qr/^m_trgm_idx$/, 'standby after the purge');

my $dbscan = scan_database($standby, $db, { R => $mk{R}, R_tail => $mk{R_tail} },
	checkpoint => 0);
ok(@{ $dbscan->{files} } > 10, 'the standby\'s database directory was read');
foreach my $name (qw(R R_tail))
{
	ok( total_hits($dbscan, $name, 'ci') + total_hits($dbscan, $name, 'frag')
		  == 0,
		"no file of the standby's database holds $name")
	  or diag hit_report($dbscan, $name);
}

is( $standby->safe_psql(
		$db,
		"SELECT count(*), count(body) FROM m; SET enable_seqscan = off;"
		  . " SELECT count(*) FROM m WHERE tsv @@ to_tsquery('simple', '\L$mk{C}');"
		  . " SELECT count(*) FROM m WHERE body LIKE '%$mk{C}%';"
		  . " SELECT id FROM m WHERE body = (SELECT body FROM m WHERE id = 5002)"),
	"32|31\n1\n1\n5002",
	'the standby reads m back, through its rebuilt indexes too');

# ---------------------------------------------------------------------------
# A standby query whose snapshot still sees the pre-recall version: when
# the purge's pages are replayed, it must either still read the old text
# or be cancelled by a recovery conflict (as pruning's WAL records cause)
# -- never read the zeroed tuple.  A table with btrees only, so that no
# REINDEX lock conflict cancels the session first.

my %sm = (R => random_marker(), C => random_marker());
$primary->safe_psql(
	$db, qq{
CREATE TABLE s2 (id int PRIMARY KEY, sender text, body text);
CREATE INDEX s2_body_idx ON s2 (body);
SELECT recall.enable('s2', '{body}', sender => 'sender');
INSERT INTO s2 VALUES (1, 'alice', 'hello $sm{R} there'), (2, 'bob', 'hello $sm{C} there');
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
my $old = $standby->background_psql($db, on_error_stop => 0);
$old->query_safe(
	'SET enable_indexscan = off; SET enable_bitmapscan = off;'
	  . ' BEGIN ISOLATION LEVEL REPEATABLE READ');
is($old->query_safe('SELECT count(*) FROM s2'),
	'2', 'a standby session took its snapshot before the recall');
recall_with_residue($primary, $db, 's2', [1],
	"SET LOCAL recall.actor = 'alice'; SELECT recall.recall('s2', 1)");
@rows = purge_done($primary, $db, 's2');
ok(!grep({ $_->[1] eq 'deferred' } @rows),
	'the primary purged s2 (it does not know the standby\'s snapshot)');
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
# the conflict may cancel the query or terminate the whole session
my ($out, $failed) = ('', 1);
eval {
	($out, $failed) = $old->query(
		"SELECT string_agg(id || ':' || coalesce(body, '<null>'), ',' ORDER BY id) FROM s2");
};
my $err = ($old->{stderr} // '') . ($@ // '');
$err .= PostgreSQL::Test::Utils::slurp_file($standby->logfile) =~ /conflict with recovery/ ? ' (log: conflict with recovery)' : '';
ok( (!$failed && $out eq "1:hello $sm{R} there,2:hello $sm{C} there")
	  || $err =~ /conflict with recovery/,
	'the old standby snapshot reads the old text or is cancelled by a recovery conflict'
) or diag "read: '$out'; error: $err";
eval { $old->quit };
ok($standby->poll_query_until($db, 'SELECT 1', '1'), 'the standby still runs');

$standby->stop;
$primary->stop;
done_testing();
