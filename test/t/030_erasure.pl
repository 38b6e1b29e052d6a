# Copyright (c) pg_recall authors
#
# 030_erasure.pl
#	  recall.purge() and the rebuilder erase recalled content from the
#	  relation files, as a
#	  forensic scan of the files (ForensicScan.pm) proves, not a query:
#	  recall.purge() scrubs the heap and TOAST pages the recall left its
#	  old bytes on (and reports the content indexes), the rebuilder
#	  (recall.index_rebuild_interval = 0) rebuilds those indexes with
#	  REINDEX CONCURRENTLY; then
#	  short content in the heap, TOASTed content (STORAGE EXTERNAL; and
#	  compressed, pglz out of line and inline, lz4), content in a btree, a
#	  GIN full-text and a GiST pg_trgm index, and in registered copy tables
#	  (wiped and deleted copies): after the recall and recall.purge() no
#	  file of the table holds the text, whole, lowercased or by 10-byte
#	  fragment, nor does any other file of the database, while a control
#	  message that was not recalled is still found everywhere it was.  One
#	  recalled row among 20,000, where VACUUM bypasses index cleanup, is
#	  erased too.  HOT chains stay whole: after purging a HOT recall (the
#	  content not indexed), and a non-HOT recall of a row whose earlier
#	  update was HOT, every row is still found through every btree
#	  (amcheck heapallindexed) and a unique key still refuses duplicates.
#	  A recalled text that a btree page split copied into separator keys
#	  (high key, parent pivot) leaves no copy either.
#	  A transaction holding an old snapshot defers the purge (the bytes
#	  stay, and that transaction still reads the old text); after it ends
#	  the purge completes.  The table's owner may purge, another role may
#	  not.  pg_dirtyread finds no old version with the text after the
#	  purge, and can still print every version; pg_statistic never holds
#	  content values after ANALYZE.
#
#	  Every scan first proves itself: the control message's markers are
#	  found, and the recalled message's before the purge.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use ForensicScan;
use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('erasure');
$node->init;
# pg_dirtyread may crash a backend on purged pages (section 5): carry on
$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
# recall.purge() is the purge tested here (the worker's is off), the
# rebuilder rebuilds at once, no sweep erases anything behind their back
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = 0
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
});
$node->start;

my $db = 'postgres';
$node->safe_psql(
	$db, q{
CREATE EXTENSION pg_recall;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION pageinspect;
CREATE EXTENSION pg_dirtyread;
CREATE EXTENSION amcheck;
});
install_residue_helpers($node, $db);

# ---------------------------------------------------------------------------
# helpers

# No byte of a marker left in any file of a scan: not whole, not
# lowercased, not a single 10-byte fragment.
sub no_hits
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($scan, $name, $label) = @_;
	my $n =
	  total_hits($scan, $name, 'exact') +
	  total_hits($scan, $name, 'ci') +
	  total_hits($scan, $name, 'frag');
	ok($n == 0, "$label: nothing of $name in any file")
	  or diag hit_report($scan, $name);
}

# A marker found whole (case-insensitively) in the files of the relations
# or kinds matching $re.
sub found
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($scan, $name, $re, $label) = @_;
	ok(found_in($scan, $name, $re), "$label: $name found in $re")
	  or diag hit_report($scan, $name);
}

# The scan read real files.
sub scanned
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($scan, $label) = @_;
	my @missing = grep { !$_->{exists} && $_->{kind} !~ /earlier/ }
	  @{ $scan->{files} };
	ok(@{ $scan->{files} } > 0 && !@missing,
		"$label: every file of the relations read ("
		  . scalar(@{ $scan->{files} }) . " files)")
	  or diag explain \@missing;
}

# The rows of a purge, by kind.
sub purge_kinds
{
	my (@rows) = @_;
	my %k;
	push @{ $k{ $_->[1] } }, $_ for @rows;
	return \%k;
}

# Recall a message as its sender (recording its residue).
sub recall
{
	my ($table, $id, $actor) = @_;
	recall_with_residue($node, $db, $table, [$id],
		"SET LOCAL recall.actor = '$actor'; SELECT recall.recall('$table', $id)");
}

# Wait for the rebuilder to have rebuilt the content indexes of a table.
sub rebuilt
{
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($table) = @_;
	ok(wait_rebuilt($node, $db, $table), "the rebuilder rebuilt the content indexes of $table")
	  or diag $node->safe_psql($db, 'SELECT * FROM recall.index_state');
}

# ---------------------------------------------------------------------------
# 1. short content, STORAGE EXTERNAL TOAST, btree, GIN full text, GiST
#    pg_trgm, copy tables

my $R = random_marker();    # the message recalled
my $C = random_marker();    # the control, never recalled

# body: the marker and a second random word (no word shared with other
# rows, so that the GiST trigram keys of two rows share no fragment)
my %body = (
	R => "$R " . md5_hex("${R}body"),
	C => "$C " . md5_hex("${C}body"));
my %big = (
	R => "$R " . md5_chain($R, 100),
	C => "$C " . md5_chain($C, 100));

$node->safe_psql(
	$db, qq{
CREATE TABLE m (id int PRIMARY KEY, sender text, body text, big text, tsv tsvector);
ALTER TABLE m ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX m_body_idx ON m (body);
CREATE INDEX m_tsv_idx ON m USING gin (tsv);
CREATE INDEX m_trgm_idx ON m USING gist (body gist_trgm_ops);
SELECT recall.enable('m', '{body,big,tsv}', sender => 'sender');

-- copy tables: quotes keep a wiped copy, previews are deleted
CREATE TABLE quotes (id int PRIMARY KEY, msg_id int, quote text);
CREATE INDEX quotes_msg_idx ON quotes (msg_id);
CREATE INDEX quotes_quote_idx ON quotes (quote);
CREATE TABLE previews (msg_id int PRIMARY KEY, preview text);
SELECT recall.add_copy('m', 'quotes', '{msg_id}', '{quote}');
SELECT recall.add_copy('m', 'previews', '{msg_id}', action => 'delete');

-- other messages: TOAST of several pages, but one heap page with more
-- than a tenth free, which reads do not prune (a prune compacts the page
-- and may overwrite the dead version before the purge looks at it)
INSERT INTO m (id, sender, body, big, tsv)
SELECT i, 'carol', md5(i::text) || ' filler', repeat(md5(i::text), 80),
       to_tsvector('simple', md5(i::text) || ' filler')
FROM generate_series(1, 30) i;

INSERT INTO m (id, sender, body, big, tsv) VALUES
  (5001, 'alice', '$body{R}', '$big{R}', to_tsvector('simple', '$body{R}')),
  (5002, 'bob',   '$body{C}', '$big{C}', to_tsvector('simple', '$body{C}'));
INSERT INTO quotes VALUES (1, 5001, 'quoting: $R said so'), (2, 5002, 'quoting: $C said so');
INSERT INTO previews VALUES (5001, 'preview $R ...'), (5002, 'preview $C ...');
});

my %m_markers = (
	R      => $R,
	C      => $C,
	R_tail => md5_hex("${R}90"),    # in the last TOAST chunk of big
	C_tail => md5_hex("${C}90"),
	R_trgm => trgm_bytes($node, $db, "'$body{R}'"),    # GiST leaf key
	C_trgm => trgm_bytes($node, $db, "'$body{C}'"));
my @m_tables = qw(m quotes previews);
my $m_toast = $node->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'm'::regclass");
my %want = (
	heap  => qr/^m$/,
	toast => qr/^\Q$m_toast\E$/,
	btree => qr/^m_body_idx$/,
	gin   => qr/^m_tsv_idx$/,
	gist  => qr/^m_trgm_idx$/);

my $scan = scan_relations($node, $db, \@m_tables, \%m_markers);
scanned($scan, 'm before the recall');
foreach my $who (qw(R C))
{
	found($scan, $who, $want{$_}, "m before the recall")
	  for qw(heap toast btree gin);
	found($scan, "${who}_tail", $want{toast}, "m before the recall");
	found($scan, "${who}_trgm", $want{gist},  "m before the recall");
	found($scan, $who, qr/^quotes$/,   "m before the recall");
	found($scan, $who, qr/^previews$/, "m before the recall");
}
is(total_hits($scan, 'C', 'exact', sub { $_[0]{relation} eq 'm_tsv_idx' }),
	0, 'the GIN index holds the marker lowercased only (the scan needs ci)');

recall('m', 5001, 'alice');
is( $node->safe_psql(
		$db,
		"SELECT body IS NULL AND big IS NULL AND tsv IS NULL FROM m WHERE id = 5001"
	),
	't',
	'the recall wiped the content');
is($node->safe_psql($db, "SELECT quote IS NULL FROM quotes WHERE msg_id = 5001"),
	't', 'the recall wiped the quote');
is($node->safe_psql($db, "SELECT count(*) FROM previews WHERE msg_id = 5001"),
	'0', 'the recall deleted the preview');

my $dirty_sql = q{
SELECT count(*) FROM pg_dirtyread('m') AS t(id int, sender text, body text,
    big text, tsv tsvector, recalled_at timestamptz, recalled_by text,
    recall_reason text)
WHERE body LIKE '%MARK%' OR big LIKE '%MARK%' OR tsv::text LIKE '%MARK%'};
(my $dirty_r = $dirty_sql) =~ s/MARK/$R/g;
(my $dirty_r_lc = $dirty_sql) =~ s/MARK/\L$R/g;
is($node->safe_psql($db, $dirty_r), '1',
	'before the purge pg_dirtyread finds the old version');

$scan = scan_relations($node, $db, \@m_tables, \%m_markers);
my @m_before = @{ $scan->{files} };
foreach my $k (qw(heap toast btree gin))
{
	found($scan, 'R', $want{$k}, 'm after the recall, before the purge');
}
found($scan, 'R_trgm', $want{gist}, 'm after the recall, before the purge');
found($scan, 'R', qr/^quotes$/,   'm after the recall, before the purge');
found($scan, 'R', qr/^previews$/, 'm after the recall, before the purge');

my @rows = purge_done($node, $db, 'm');
my $k = purge_kinds(@rows);
ok(!$k->{deferred}, 'the purge of m was not deferred') or diag explain \@rows;
my %by_rel = map { $_->[0] => $_ } @rows;
ok($by_rel{m} && $by_rel{m}[3] > 0, 'the purge scrubbed heap pages of m')
  or diag explain \@rows;
ok((grep { $_->[1] eq 'toast' && $_->[3] > 0 } @rows),
	'the purge scrubbed TOAST pages')
  or diag explain \@rows;
is( join(',', sort map { "$_->[0]:$_->[5]" } grep { $_->[1] eq 'index' } @rows),
	'm_body_idx:f,m_trgm_idx:f,m_tsv_idx:f,quotes_quote_idx:f',
	'the purge reports the content indexes (btree, GiST, GIN, a copy\'s) as left to the rebuilder');
ok($by_rel{quotes} && $by_rel{previews}, 'the copy tables were purged')
  or diag explain \@rows;
rebuilt('m');

$scan = scan_relations($node, $db, \@m_tables, \%m_markers,
	extra => \@m_before);
scanned($scan, 'm after the purge');
no_hits($scan, $_, 'm after the purge') for qw(R R_tail R_trgm);
found($scan, 'C', $want{$_}, 'm after the purge') for qw(heap toast btree gin);
found($scan, 'C_tail', $want{toast}, 'm after the purge');
found($scan, 'C_trgm', $want{gist},  'm after the purge');
found($scan, 'C', qr/^quotes$/,   'm after the purge');
found($scan, 'C', qr/^previews$/, 'm after the purge');

my $dbscan = scan_database($node, $db, { R => $R, R_tail => $m_markers{R_tail} });
ok(@{ $dbscan->{files} } > 10, 'the database directory was read ('
	  . scalar(@{ $dbscan->{files} }) . ' files)');
no_hits($dbscan, $_, 'every file of the database after the purge')
  for qw(R R_tail);

is( $node->safe_psql(
		$db,
		"SELECT body = '$body{C}' AND big = '$big{C}' AND tsv = to_tsvector('simple', '$body{C}')"
		  . " FROM m WHERE id = 5002"),
	't',
	'the control message reads back unchanged');
is($node->safe_psql($db, "SELECT count(*) FROM m WHERE tsv @@ to_tsquery('simple', '\L$C')"),
	'1', 'the rebuilt GIN index finds the control');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SELECT count(*) FROM m WHERE body LIKE '%$C%'"),
	'1',
	'the rebuilt GiST index finds the control');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM recall.purge_state WHERE tbl = 'm'::regclass"),
	'1',
	'the purge is recorded in recall.purge_state');
is($node->safe_psql($db, "SELECT count(*) FROM recall.purge('m')"),
	'0', 'a second purge has nothing to do');

# pg_dirtyread reads dead tuples too: it must not find the old version
{
	my ($ret, $out, $err) = $node->psql($db, $dirty_r);
	is($ret, 0, 'pg_dirtyread reads m after the purge') or diag $err;
	is($out, '0', 'after the purge pg_dirtyread finds no old version with the text');
	($ret, $out, $err) = $node->psql($db, $dirty_r_lc);
	is($out, '0', 'nor with the lowercased text (tsvector)');
}

# pg_statistic: ANALYZE keeps no content values
$node->safe_psql($db, 'ANALYZE m; ANALYZE quotes');
is( $node->safe_psql(
		$db,
		"SELECT string_agg(attname || '=' || attstattarget, ',' ORDER BY attname)"
		  . " FROM pg_attribute WHERE attrelid = 'm'::regclass AND attname IN ('body', 'big', 'tsv')"
	),
	'big=0,body=0,tsv=0',
	'enable set the statistics target of the content columns to 0');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'm'"
		  . " AND attname IN ('body', 'big', 'tsv')"),
	'0',
	'no statistics of content columns after ANALYZE');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'm'"
		  . " AND attname = 'sender'"),
	'1',
	'ANALYZE did gather the other columns\' statistics');
$scan = scan_relations($node, $db, ['pg_statistic'], { C => $C, R => $R });
scanned($scan, 'pg_statistic');
no_hits($scan, 'C', 'pg_statistic after ANALYZE (a live message)');
no_hits($scan, 'R', 'pg_statistic after ANALYZE (the recalled message)');

# statistics gathered before recall.enable are cleared by it
my $P = random_marker();
$node->safe_psql(
	$db, qq{
CREATE TABLE pre (id int PRIMARY KEY, sender text, body text);
INSERT INTO pre SELECT i, 'dave', CASE WHEN i % 2 = 0 THEN '$P' ELSE 'x' || i END
FROM generate_series(1, 100) i;
ANALYZE pre;
});
is( $node->safe_psql(
		$db,
		"SELECT most_common_vals::text LIKE '%$P%' FROM pg_stats WHERE tablename = 'pre' AND attname = 'body'"
	),
	't',
	'before enable, pg_statistic holds content values');
$node->safe_psql($db,
	"SELECT recall.enable('pre', '{body}', sender => 'sender'); ANALYZE pre;");
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM pg_stats WHERE tablename = 'pre' AND attname = 'body'"),
	'0',
	'enable cleared the content column\'s statistics, ANALYZE keeps none');
# Not a guarantee of the spec, for the record: enable deletes the rows,
# their bytes stay in pg_statistic's pages until overwritten.
$scan = scan_relations($node, $db, ['pg_statistic'], { P => $P });
note 'pg_statistic files after enable: '
  . total_hits($scan, 'P', 'ci')
  . ' copies of a content value gathered before enable';

# ---------------------------------------------------------------------------
# 2. compressed content: pglz out of line, pglz inline, lz4 out of line.
#    A compressed value's bytes are not its text: the markers are slices
#    of the stored bytes (ends of the values, made of md5 chains that do
#    not compress), read with pageinspect and from the TOAST table.

my %cm = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, q{
CREATE TABLE c (id int PRIMARY KEY, sender text, body text, body4 text COMPRESSION lz4, note text);
SELECT recall.enable('c', '{body,body4,note}', sender => 'sender');
});
foreach my $who (qw(R C))
{
	my $s = $cm{$who};
	my $id = $who eq 'R' ? 1 : 2;
	my $sender = $who eq 'R' ? 'alice' : 'bob';
	$node->safe_psql(
		$db, qq{
INSERT INTO c VALUES ($id, '$sender',
  repeat('$s compressible repeated text ', 600) || '${\ md5_chain($s, 100)}',
  repeat('$s lz4 repeated text ', 600) || '${\ md5_chain("${s}lz4", 100)}',
  repeat('$s note ', 60) || '${\ md5_chain("${s}note", 8)}')});
}
is( $node->safe_psql(
		$db,
		"SELECT string_agg(pg_column_compression(body) || '/' || pg_column_compression(body4) || '/' || pg_column_compression(note), ',' ORDER BY id) FROM c"
	),
	'pglz/lz4/pglz,pglz/lz4/pglz',
	'c stores its values compressed (pglz, lz4, pglz)');

my %c_markers = (R => $cm{R}, C => $cm{C});
my %c_where;    # marker name => relation it is stored in
foreach my $who (qw(R C))
{
	my $id = $who eq 'R' ? 1 : 2;
	foreach my $col (qw(body body4 note))
	{
		my ($storage, @slices) =
		  stored_slices($node, $db, 'c', $col, "id = $id");
		is($storage, $col eq 'note' ? 'inline' : 'external',
			"c.$col of $who is stored $storage");
		ok(@slices > 0, "c.$col of $who: stored bytes read");
		for my $i (0 .. $#slices)
		{
			my $name = "$who.$col.$i";
			$c_markers{$name} = $slices[$i];
			$c_where{$name} = $storage eq 'inline' ? 'heap' : 'toast';
		}
	}
}

$scan = scan_relations($node, $db, ['c'], \%c_markers);
scanned($scan, 'c before the recall');
foreach my $name (sort keys %c_where)
{
	ok( total_hits(
			$scan, $name, 'exact', sub { $_[0]{kind} eq $c_where{$name} }) > 0,
		"c before the recall: stored bytes $name found in $c_where{$name}")
	  or diag hit_report($scan, $name);
}
is(total_hits($scan, 'C', 'ci', sub { $_[0]{kind} eq 'toast' }) > 0,
	1, 'c before the recall: the lz4 value shows its marker in TOAST');

recall('c', 1, 'alice');
$scan = scan_relations($node, $db, ['c'], \%c_markers);
my @c_before = @{ $scan->{files} };
foreach my $name (grep { /^R\./ } sort keys %c_where)
{
	ok( total_hits(
			$scan, $name, 'exact', sub { $_[0]{kind} eq $c_where{$name} }) > 0,
		"c after the recall, before the purge: $name found")
	  or diag hit_report($scan, $name);
}

@rows = purge_done($node, $db, 'c');
ok(!purge_kinds(@rows)->{deferred}, 'the purge of c was not deferred');
$scan = scan_relations($node, $db, ['c'], \%c_markers, extra => \@c_before);
scanned($scan, 'c after the purge');
no_hits($scan, $_, 'c after the purge') for grep { /^R/ } sort keys %c_markers;
foreach my $name (grep { /^C\./ } sort keys %c_where)
{
	ok( total_hits(
			$scan, $name, 'exact', sub { $_[0]{kind} eq $c_where{$name} }) > 0,
		"c after the purge: control bytes $name still found")
	  or diag hit_report($scan, $name);
}
is( $node->safe_psql(
		$db,
		"SELECT md5(body) = md5(repeat('$cm{C} compressible repeated text ', 600) || '${\ md5_chain($cm{C}, 100)}')"
		  . " AND note LIKE '$cm{C} note%' AND body4 LIKE '$cm{C} lz4%' FROM c WHERE id = 2"),
	't',
	'the compressed control values read back');

# ---------------------------------------------------------------------------
# 3. one recalled row among 20,000: VACUUM bypasses index cleanup (too few
#    dead items) and leaves the text in the btree; the purge does not.

my %bm = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE TABLE t20k (id int PRIMARY KEY, sender text, body text)
    WITH (autovacuum_enabled = off);    -- this test's VACUUM decides
CREATE INDEX t20k_body_idx ON t20k (body);
SELECT recall.enable('t20k', '{body}', sender => 'sender');
INSERT INTO t20k SELECT i, 'carol', 'message ' || md5(i::text) FROM generate_series(1, 20000) i;
UPDATE t20k SET sender = 'alice', body = 'hello $bm{R} there' WHERE id = 10007;
UPDATE t20k SET sender = 'bob',   body = 'hello $bm{C} there' WHERE id = 10008;
VACUUM t20k;
});
$scan = scan_relations($node, $db, ['t20k'], \%bm);
scanned($scan, 't20k before the recall');
found($scan, $_, qr/^t20k$/,          't20k before the recall') for qw(R C);
found($scan, $_, qr/^t20k_body_idx$/, 't20k before the recall') for qw(R C);

recall('t20k', 10007, 'alice');
my ($ret, $out, $err) = $node->psql($db, 'VACUUM (VERBOSE) t20k');
like($err, qr/index scan bypassed/,
	'VACUUM of t20k bypasses index cleanup for one dead row');
$scan = scan_relations($node, $db, ['t20k'], \%bm);
my @t_before = @{ $scan->{files} };
found($scan, 'R', qr/^t20k_body_idx$/,
	't20k after the recall and VACUUM: the btree still holds the text');

@rows = purge_done($node, $db, 't20k');
ok(!purge_kinds(@rows)->{deferred}, 'the purge of t20k was not deferred');
rebuilt('t20k');
$scan = scan_relations($node, $db, ['t20k'], \%bm, extra => \@t_before);
scanned($scan, 't20k after the purge');
no_hits($scan, 'R', 't20k after the purge');
found($scan, 'C', qr/^t20k$/,            't20k after the purge');
found($scan, 'C', qr/^t20k_body_idx$/,   't20k after the purge');
is($node->safe_psql($db, 'SELECT count(*), count(body) FROM t20k'),
	'20000|19999', 't20k reads back');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT id FROM t20k WHERE body = 'hello $bm{C} there'"
	),
	'10008',
	'the control is found through the btree');

# ---------------------------------------------------------------------------
# 3b. a HOT recall (no index on the content): the old version is the root
#     of a HOT chain that index lookups still walk

my %hm = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE TABLE h (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('h', '{body}', sender => 'sender');
INSERT INTO h VALUES (1, 'alice', 'hello $hm{R} there'), (2, 'bob', 'hello $hm{C} there');
});
recall('h', 1, 'alice');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM heap_page_items(get_raw_page('h', 0))"
		  . " WHERE t_infomask2 & 32768 <> 0"),    # HEAP_ONLY_TUPLE
	'1',
	'the recall of h was a HOT update');
$scan = scan_relations($node, $db, ['h'], \%hm);
my @h_before = @{ $scan->{files} };
found($scan, $_, qr/^h$/, 'h after the recall, before the purge') for qw(R C);
@rows = purge_done($node, $db, 'h');
ok(!purge_kinds(@rows)->{deferred}, 'the purge of h was not deferred');
$scan = scan_relations($node, $db, ['h'], \%hm, extra => \@h_before);
no_hits($scan, 'R', 'h after the purge');
found($scan, 'C', qr/^h$/, 'h after the purge');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SET enable_bitmapscan = off;"
		  . " SELECT id, body IS NULL, recalled_at IS NOT NULL FROM h WHERE id = 1"),
	'1|t|t',
	'the recalled row is found through the primary key (HOT chain) after the purge');
{
	my ($ret, $out, $err) =
	  $node->psql($db, "SELECT bt_index_check('h_pkey', true)");
	is($ret, 0, 'amcheck: h_pkey indexes every heap tuple after the purge')
	  or diag $err;
	($ret, $out, $err) = $node->psql($db,
		"INSERT INTO h (id, sender, body) VALUES (1, 'mallory', 'duplicate')");
	like($err, qr/duplicate key value violates unique constraint/,
		'the primary key still refuses a second row with id 1');
	$node->safe_psql($db, "DELETE FROM h WHERE sender = 'mallory'");
}
$node->safe_psql($db, 'VACUUM h');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SET enable_bitmapscan = off;"
		  . " SELECT string_agg(id || ':' || coalesce(body, '-'), ',' ORDER BY id) FROM h WHERE id IN (1, 2)"),
	"1:-,2:hello $hm{C} there",
	'and after VACUUM');

# ---------------------------------------------------------------------------
# 3c. a HOT chain then a recall that is not HOT (the content is indexed):
#     the index entries of the whole dead chain point at its root, which
#     the purge must treat as dead

my %cm2 = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE TABLE hc (id int PRIMARY KEY, sender text, body text, reactions int NOT NULL DEFAULT 0)
    WITH (fillfactor = 70);
CREATE INDEX hc_body_idx ON hc (body);
SELECT recall.enable('hc', '{body}', sender => 'sender');
INSERT INTO hc VALUES (1, 'alice', 'hello $cm2{R} there'), (2, 'bob', 'hello $cm2{C} there');
UPDATE hc SET reactions = reactions + 1;
});
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM heap_page_items(get_raw_page('hc', 0))"
		  . " WHERE t_infomask2 & 32768 <> 0"),
	'2',
	'the reactions update of hc was HOT');
recall('hc', 1, 'alice');
$scan = scan_relations($node, $db, ['hc'], \%cm2);
my @hc_before = @{ $scan->{files} };
found($scan, 'R', qr/^hc_body_idx$/, 'hc after the recall, before the purge');
@rows = purge_done($node, $db, 'hc');
ok(!purge_kinds(@rows)->{deferred}, 'the purge of hc was not deferred');
rebuilt('hc');
$scan = scan_relations($node, $db, ['hc'], \%cm2, extra => \@hc_before);
no_hits($scan, 'R', 'hc after the purge');
found($scan, 'C', qr/^(hc|hc_body_idx)$/, 'hc after the purge');
foreach my $idx (qw(hc_pkey hc_body_idx))
{
	my ($ret, $out, $err) =
	  $node->psql($db, "SELECT bt_index_check('$idx', true)");
	is($ret, 0, "amcheck: $idx indexes every heap tuple after the purge")
	  or diag $err;
}
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SET enable_bitmapscan = off;"
		  . " SELECT string_agg(id || ':' || coalesce(body, '-') || ':' || reactions, ',' ORDER BY id)"
		  . " FROM hc WHERE id IN (1, 2)"),
	"1:-:1,2:hello $cm2{C} there:1",
	'hc reads back through its primary key');

# ---------------------------------------------------------------------------
# 3d. a recalled message whose text is a btree separator key: a page split
#     copied it into the left page's high key and the parent's pivot, which
#     deleting the leaf entry leaves in place

my $ssalt = random_marker(8);
$node->safe_psql(
	$db, qq{
CREATE TABLE sep (id int PRIMARY KEY, sender text, body text);
CREATE INDEX sep_body_idx ON sep (body);
SELECT recall.enable('sep', '{body}', sender => 'sender');
INSERT INTO sep SELECT i, 'alice', 'Q' || md5('$ssalt' || i) || ' filler'
FROM generate_series(1, 1000) i;
});
is( $node->safe_psql(
		$db,
		"SELECT type = 'l' AND btpo_next <> 0 FROM bt_page_stats('sep_body_idx', 1)"),
	't',
	'block 1 of sep_body_idx is a leaf with a right sibling (so a high key)');
# the high key of block 1: a varlena with a 1-byte header, then padding
my $hikey = $node->safe_psql($db,
	"SELECT replace(data, ' ', '') FROM bt_page_items('sep_body_idx', 1) WHERE itemoffset = 1"
);
my $sep_body = substr(pack('H*', $hikey), 1);
$sep_body =~ s/\0+$//;
my $sep_id = $node->safe_psql($db,
	"SELECT id FROM sep WHERE body = '$sep_body'");
ok($sep_id =~ /^\d+$/, "the separator key is the text of message $sep_id");
my $ctl_id = $sep_id == 500 ? 501 : 500;
# the md5 part only: " filler" fragments would match other messages
my %sepm = (
	R => substr($sep_body, 1, 32),
	C => $node->safe_psql($db, "SELECT body FROM sep WHERE id = $ctl_id"));
$scan = scan_relations($node, $db, ['sep'], \%sepm);
ok(total_hits($scan, 'R', 'exact', sub { $_[0]{relation} eq 'sep_body_idx' }) >= 2,
	'before the recall the separator text is in sep_body_idx at least twice (leaf entry, high key)')
  or diag hit_report($scan, 'R');
recall('sep', $sep_id, 'alice');
@rows = purge_done($node, $db, 'sep');
ok(!purge_kinds(@rows)->{deferred}, 'the purge of sep was not deferred');
rebuilt('sep');
$scan = scan_relations($node, $db, ['sep'], \%sepm);
no_hits($scan, 'R', 'sep after the purge (the recalled text was a separator key)');
found($scan, 'C', qr/^(sep|sep_body_idx)$/, 'sep after the purge');
{
	my ($ret, $out, $err) =
	  $node->psql($db, "SELECT bt_index_check('sep_body_idx', true)");
	is($ret, 0, 'amcheck: sep_body_idx after the purge') or diag $err;
}

# ---------------------------------------------------------------------------
# 3e. a partitioned table, purged by recall.purge() without an argument

my %pm = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE TABLE pm (id int PRIMARY KEY, sender text, body text) PARTITION BY RANGE (id);
CREATE TABLE pm1 PARTITION OF pm FOR VALUES FROM (0) TO (100);
CREATE TABLE pm2 PARTITION OF pm FOR VALUES FROM (100) TO (200);
CREATE INDEX ON pm (body);
SELECT recall.enable('pm', '{body}', sender => 'sender');
INSERT INTO pm VALUES (1, 'alice', 'hello $pm{R} there'), (150, 'bob', 'hello $pm{C} there');
});
recall('pm', 1, 'alice');
$scan = scan_relations($node, $db, [qw(pm1 pm2)], \%pm);
my @pm_before = @{ $scan->{files} };
found($scan, 'R', qr/^pm1(_body_idx)?$/, 'pm after the recall, before the purge');
$out = $node->safe_psql($db,
	"SELECT string_agg(relation::text, ',' ORDER BY relation::text) FROM recall.purge() WHERE kind = 'heap'"
);
is($out, 'pm1', 'recall.purge() purged the partition that held the recalled row, only');
rebuilt('pm');
$scan = scan_relations($node, $db, [qw(pm1 pm2)], \%pm, extra => \@pm_before);
no_hits($scan, 'R', 'pm after the purge');
found($scan, 'C', qr/^pm2$/,          'pm after the purge');
found($scan, 'C', qr/^pm2_body_idx$/, 'pm after the purge');

# ---------------------------------------------------------------------------
# 4. an old snapshot defers the purge

my %sm = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE TABLE s (id int PRIMARY KEY, sender text, body text);
CREATE INDEX s_body_idx ON s (body);
SELECT recall.enable('s', '{body}', sender => 'sender');
INSERT INTO s VALUES (1, 'alice', 'hello $sm{R} there'), (2, 'bob', 'hello $sm{C} there');
});
my $old = $node->background_psql($db, on_error_stop => 1);
$old->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($old->query_safe('SELECT count(*) FROM s'), '2', 'an old snapshot read s');

recall('s', 1, 'alice');
$out = $node->safe_psql($db,
	"SELECT relation, kind, pages_scrubbed FROM recall.purge('s')");
is($out, "s|deferred|0", 'the purge is deferred while the old snapshot lives');
$scan = scan_relations($node, $db, ['s'], \%sm);
my @s_before = @{ $scan->{files} };
found($scan, 'C', qr/^(heap)$/, 's with the old snapshot');
found($scan, 'R', qr/^(heap)$/, 's with the old snapshot: bytes left in the heap');
found($scan, 'R', qr/^s_body_idx$/, 's with the old snapshot: bytes left in the btree');
is($old->query_safe('SELECT body FROM s WHERE id = 1'),
	"hello $sm{R} there", 'the old snapshot still reads the old version');
# (the position may move up to the horizon, behind the deferred recall)
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM recall.purge_state WHERE tbl = 's'::regclass AND purged_at IS NOT NULL"),
	'0',
	'a deferred purge records no purge');
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls FROM recall.purge_status WHERE tbl = 's'::regclass AND index IS NULL"),
	'1',
	'recall.purge_status shows the deferred recall pending');

$old->query_safe('COMMIT');
$old->quit;
@rows = purge_done($node, $db, 's');
$k = purge_kinds(@rows);
ok(!$k->{deferred} && $k->{heap}, 'after the old snapshot ended the purge completes')
  or diag explain \@rows;
rebuilt('s');
$scan = scan_relations($node, $db, ['s'], \%sm, extra => \@s_before);
scanned($scan, 's after the purge');
no_hits($scan, 'R', 's after the purge');
found($scan, 'C', qr/^(heap|s_body_idx)$/, 's after the purge');

# ---------------------------------------------------------------------------
# 4b. who may purge: the table's owner (not only a superuser), not others

my %om = (R => random_marker(), C => random_marker());
$node->safe_psql(
	$db, qq{
CREATE ROLE owner1 LOGIN;
CREATE ROLE other1 LOGIN;
GRANT CREATE ON SCHEMA public TO owner1;
SET ROLE owner1;
CREATE TABLE o (id int PRIMARY KEY, sender text, body text);
CREATE INDEX o_body_idx ON o (body);
SELECT recall.enable('o', '{body}', sender => 'sender');
INSERT INTO o VALUES (1, 'alice', 'hello $om{R} there'), (2, 'bob', 'hello $om{C} there');
RESET ROLE;
});
recall('o', 1, 'alice');
{
	my ($ret, $out, $err) = $node->psql(
		$db,
		"\\set VERBOSITY verbose\nSELECT kind FROM recall.purge('o')",
		connstr => $node->connstr($db) . ' user=other1');
	like($err, qr/ERROR:\s+42501:/, 'another role may not purge o');
	($ret, $out, $err) = $node->psql(
		$db,
		"SELECT count(*) FROM recall.purge('o') WHERE kind = 'heap'",
		connstr => $node->connstr($db) . ' user=owner1');
	is($ret, 0, 'the owner of o may purge it') or diag $err;
	is($out, '1', 'the owner\'s purge of o scrubbed its heap');
	rebuilt('o');
	is( $node->safe_psql(
			$db,
			"SELECT count(*) FROM pg_index WHERE indrelid = 'o'::regclass AND indisvalid"
			  . " AND indexrelid::regclass::text = 'o_body_idx'"),
		'1',
		'o_body_idx, rebuilt as its owner, is valid and keeps its name');
	$scan = scan_relations($node, $db, ['o'], \%om);
	no_hits($scan, 'R', 'o after its owner\'s purge');
	found($scan, 'C', qr/^(o|o_body_idx)$/, 'o after its owner\'s purge');
}

# ---------------------------------------------------------------------------
# 5. what a forensic reader does with pg_dirtyread: print every version of
#    the purged table m (not vacuumed since the purge) and look for the text

note 'dead versions of m with zeroed data: '
  . $node->safe_psql($db,
	"SELECT count(*) FROM heap_page_items(get_raw_page('m', 0))"
	  . " WHERE t_xmax <> 0 AND substr(t_data, 1, 8) = '\\x0000000000000000'::bytea");
{
	my ($ret, $out, $err) = $node->psql(
		$db, q{
SELECT t::text FROM pg_dirtyread('m') AS t(id int, sender text, body text,
    big text, tsv tsvector, recalled_at timestamptz, recalled_by text,
    recall_reason text)});
	is($ret, 0, 'pg_dirtyread prints every version of m after the purge')
	  or diag "pg_dirtyread: $err";
	ok($out =~ /\Q$C\E/ && $out !~ /\Q$R\E/i,
		'every version printed holds the control, none the recalled text');
}
$node->poll_query_until($db, 'SELECT 1', '1')
  or BAIL_OUT('the server did not come back');
{
	my ($ret, $out, $err) = $node->psql(
		$db, q{
SELECT id, sender, body, tsv FROM pg_dirtyread('m') AS t(id int, sender text,
    body text, big text, tsv tsvector, recalled_at timestamptz,
    recalled_by text, recall_reason text)});
	is($ret, 0, 'pg_dirtyread prints the columns of every version of m')
	  or diag "pg_dirtyread: $err";
}

# the server may have restarted (restart_after_crash)
$node->poll_query_until($db, 'SELECT 1', '1')
  or BAIL_OUT('the server did not come back');

# the purged dead versions stay harmless: VACUUM reclaims them, and the
# table reads back through its indexes
$node->safe_psql($db, 'VACUUM m');
is( $node->safe_psql(
		$db,
		"SET enable_seqscan = off; SELECT count(*), count(body) FROM m WHERE id > 0"),
	'32|31',
	'm reads back through its primary key after VACUUM');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM pg_dirtyread('m') AS t(id int, sender text, body text,"
		  . " big text, tsv tsvector, recalled_at timestamptz, recalled_by text,"
		  . " recall_reason text) WHERE t::text LIKE '%$C%'"),
	'1',
	'after VACUUM pg_dirtyread reads m again');

$node->stop;
done_testing();
