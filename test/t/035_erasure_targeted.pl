# Copyright (c) pg_recall authors
#
# 035_erasure_targeted.pl
#	  The targeted purge visits what a recall left behind, and nothing else:
#	  - on a partitioned table of three partitions, recall.purge() reports
#	    (and a forensic scan confirms) only the recalled row's partition,
#	    its TOAST relation and its content index, a handful of pages out of
#	    hundreds; the other partitions are not visited;
#	  - a page someone has pinned is not waited for: the purge reports it
#	    deferred, keeps the recall pending, and erases it once the page is
#	    free (never skipped for good);
#	  - a partition dropped while its recall is pending is skipped with a
#	    LOG line, and the other recalls are purged;
#	  - a table rewritten while its recall is pending (VACUUM FULL) is
#	    purged without error;
#	  - a recall without recorded residue (as 1.0 wrote them) hands its
#	    table to the sweep, which erases it;
#	  - trust: the content index of a table owned by an ordinary role has a
#	    function of that role in its expression: the purge finds the index
#	    without evaluating the function, and the rebuild evaluates it only
#	    as the table's owner, never as a superuser;
#	  - recall.purge_status is readable by recall_admin, not by others.

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

my $node = PostgreSQL::Test::Cluster->new('erasure_targeted');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = 0
recall.index_rebuild_interval = 0
recall.sweep_interval = -1
});
$node->start;

my $db = 'postgres';
$node->safe_psql($db, 'CREATE EXTENSION pg_recall');
install_residue_helpers($node, $db);

sub hits
{
	my ($scan, $name, $filter) = @_;
	return total_hits($scan, $name, 'exact', $filter) +
	  total_hits($scan, $name, 'ci',   $filter) +
	  total_hits($scan, $name, 'frag', $filter);
}

# The rows of recall.purge(tbl), as arrayrefs.
sub purge_rows
{
	my ($table) = @_;
	return map { [ split /\|/ ] } split /\n/,
	  $node->safe_psql($db,
		"SELECT relation, kind, pages_scanned, pages_scrubbed, bytes_zeroed, rebuilt"
		  . " FROM recall.purge('$table') ORDER BY kind, relation::text");
}

sub recall
{
	my ($table, $id, $actor) = @_;
	recall_with_residue($node, $db, $table, [$id],
		"SET LOCAL recall.actor = '$actor'; SELECT recall.recall('$table', $id)");
}

# ---------------------------------------------------------------------------
# 1. only the recalled row's partition is visited

my $R = random_marker();
my $C = random_marker();
$node->safe_psql(
	$db, qq{
CREATE TABLE p (id int PRIMARY KEY, sender text, body text, big text) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10000);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (10000) TO (20000);
CREATE TABLE p3 PARTITION OF p FOR VALUES FROM (20000) TO (30000);
ALTER TABLE p ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX p_body_idx ON p (body);
SELECT recall.enable('p', '{body,big}', sender => 'sender');
INSERT INTO p SELECT i, 'carol', 'message ' || md5(i::text), repeat(md5(i::text), 70)
FROM generate_series(0, 29999, 10) i;
UPDATE p SET sender = 'alice', body = 'hello $R there', big = '$R ' || repeat(md5('$R'), 70) WHERE id = 15000;
UPDATE p SET sender = 'bob', body = 'hello $C there', big = '$C ' || repeat(md5('$C'), 70) WHERE id = 25000;
VACUUM p;
});
my %pages = map { split /\|/ } split /\n/,
  $node->safe_psql($db,
	"SELECT c.relname, pg_relation_size(c.oid) / 8192 + pg_relation_size(c.reltoastrelid) / 8192"
	  . " FROM pg_class c WHERE c.relname IN ('p1', 'p2', 'p3')");
my $total_pages = 0;
$total_pages += $_ for values %pages;
my $p2_toast = $node->safe_psql($db,
	"SELECT reltoastrelid::regclass FROM pg_class WHERE relname = 'p2'");
my $p2_idx = $node->safe_psql($db,
	"SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'p2'::regclass"
	  . " AND indexrelid::regclass::text LIKE '%body%'");

recall('p', 15000, 'alice');
my $scan = scan_relations($node, $db, [qw(p1 p2 p3)], { R => $R, C => $C });
my @before = @{ $scan->{files} };
ok(hits($scan, 'R', sub { $_[0]{relation} eq 'p2' }) > 0,
	'after the recall, before the purge, p2 holds the recalled text');

my @rows = purge_rows('p');
is( join(',', map { "$_->[0]:$_->[1]" } @rows),
	"p2:heap,$p2_idx:index,$p2_toast:toast",
	'recall.purge() visits the heap and TOAST of the recalled row\'s partition only, and reports its content index'
) or diag explain \@rows;
my $scanned = 0;
$scanned += $_->[2] for @rows;
ok($scanned > 0 && $scanned <= 4,
	"the purge read $scanned pages of the $total_pages heap and TOAST pages of p");
ok(wait_rebuilt($node, $db, 'p'), 'the rebuilder rebuilt p2\'s content index');
$scan = scan_relations($node, $db, [qw(p1 p2 p3)], { R => $R, C => $C },
	extra => \@before);
is(hits($scan, 'R'), 0, 'no file of p holds the recalled text')
  or diag hit_report($scan, 'R');
ok(found_in($scan, 'C', qr/^p3$/), 'the control is still in p3');
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM recall.index_state WHERE tbl = 'p'::regclass"),
	'1',
	'only the index of the visited partition was marked for a rebuild');

# ---------------------------------------------------------------------------
# 2. a page in use is not waited for, and not skipped for good

my $B = random_marker();
$node->safe_psql(
	$db, qq{
CREATE TABLE b (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('b', '{body}', sender => 'sender');
INSERT INTO b SELECT i, 'carol', 'filler ' || md5(i::text) FROM generate_series(1, 20) i;
UPDATE b SET sender = 'alice', body = 'hello $B there' WHERE id = 5;
});
recall('b', 5, 'alice');
# a cursor opened after the recall (its snapshot does not defer the purge)
# keeps block 0 pinned
my $pin = $node->background_psql($db, on_error_stop => 1);
$pin->query_safe('BEGIN; DECLARE c CURSOR FOR SELECT id FROM b');
is($pin->query_safe('FETCH 1 FROM c'), '1', 'a cursor holds a pin on block 0 of b');
my $t0 = time;
@rows = purge_rows('b');
my $took = time - $t0;
is( join(',', map { "$_->[0]:$_->[1]:$_->[3]" } @rows),
	'b:deferred:0,b:heap:0',
	'the pinned page is reported deferred, not scrubbed')
  or diag explain \@rows;
ok($took < 5, sprintf('the purge did not wait for the page (%.2f s)', $took));
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls FROM recall.purge_status WHERE tbl = 'b'::regclass AND index IS NULL"),
	'1',
	'the recall stays pending');
$scan = scan_relations($node, $db, ['b'], { B => $B });
ok(hits($scan, 'B') > 0, 'and its text is still in b');
$pin->query_safe('COMMIT');
$pin->quit;
@rows = purge_rows('b');
is(join(',', map { "$_->[0]:$_->[1]" } @rows), 'b:heap',
	'once the page is free the next purge scrubs it');
$scan = scan_relations($node, $db, ['b'], { B => $B });
is(hits($scan, 'B'), 0, 'no file of b holds the recalled text')
  or diag hit_report($scan, 'B');
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls FROM recall.purge_status WHERE tbl = 'b'::regclass AND index IS NULL"),
	'0',
	'nothing pending');

# ---------------------------------------------------------------------------
# 3. a partition dropped, a table rewritten, while their recalls are pending

$node->safe_psql(
	$db, q{
CREATE TABLE q (id int PRIMARY KEY, sender text, body text) PARTITION BY RANGE (id);
CREATE TABLE q1 PARTITION OF q FOR VALUES FROM (0) TO (100);
CREATE TABLE q2 PARTITION OF q FOR VALUES FROM (100) TO (200);
SELECT recall.enable('q', '{body}', sender => 'sender');
INSERT INTO q VALUES (1, 'alice', 'one'), (101, 'alice', 'two');
CREATE TABLE w (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('w', '{body}', sender => 'sender');
INSERT INTO w SELECT i, 'alice', 'filler ' || md5(i::text) FROM generate_series(1, 500) i;
});
recall('q', 1,   'alice');
recall('q', 101, 'alice');
recall('w', 250, 'alice');
my $q1 = $node->safe_psql($db, "SELECT 'q1'::regclass::oid");
$node->safe_psql($db, 'ALTER TABLE q DETACH PARTITION q1; DROP TABLE q1; VACUUM FULL w');
my $log_pos = -s $node->logfile;
@rows = purge_rows('q');
is(join(',', map { "$_->[0]:$_->[1]" } @rows), 'q2:heap',
	'the purge of q skips the dropped partition and purges the other one');
like(slurp_file($node->logfile, $log_pos),
	qr/skipping the erasure of relation $q1: it no longer exists/,
	'the dropped partition is logged');
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls FROM recall.purge_status WHERE tbl = 'q'::regclass AND index IS NULL"),
	'0',
	'and no recall of q stays pending');
my ($ret, $out, $err) = $node->psql($db, "SELECT kind FROM recall.purge('w')");
is($ret, 0, 'the purge of the rewritten table w runs') or diag $err;
is( $node->safe_psql(
		$db,
		"SELECT pending_recalls FROM recall.purge_status WHERE tbl = 'w'::regclass AND index IS NULL"),
	'0',
	'and leaves nothing pending');

# ---------------------------------------------------------------------------
# 4. a recall without residue (1.0's events): its table goes to the sweep

my $N = random_marker();
$node->safe_psql(
	$db, qq{
CREATE TABLE n (id int PRIMARY KEY, sender text, body text, big text);
ALTER TABLE n ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE INDEX n_body_idx ON n (body);
SELECT recall.enable('n', '{body,big}', sender => 'sender');
INSERT INTO n SELECT i, 'carol', 'filler ' || md5(i::text), repeat(md5(i::text), 70)
FROM generate_series(1, 50) i;
UPDATE n SET sender = 'alice', body = 'hello $N there', big = '$N ' || repeat(md5('$N'), 70) WHERE id = 7;
});
# the first sweep of n, before the recall
$node->safe_psql($db, "ALTER SYSTEM SET recall.sweep_interval = '1d'; SELECT pg_reload_conf()");
ok( $node->poll_query_until(
		$db,
		"SELECT count(*) = 2 FROM recall.sweep_state WHERE tbl = 'n'::regclass AND last_sweep IS NOT NULL"),
	'n was swept once, before the recall');
# an event as 1.0 wrote it: no residue
$node->safe_psql(
	$db, q{
BEGIN;
SET LOCAL recall.actor = 'alice';
SELECT recall.recall('n', 7);
UPDATE recall.events SET residue = NULL WHERE xid = pg_current_xact_id();
COMMIT;});
$scan = scan_relations($node, $db, ['n'], { N => $N });
ok(hits($scan, 'N', sub { $_[0]{kind} =~ /^(heap|toast)$/ }) > 0,
	'after the recall n\'s heap and TOAST hold the text');
my $before_purge = $node->safe_psql($db, 'SELECT clock_timestamp()');
@rows = purge_rows('n');
is(join(',', map { "$_->[0]:$_->[1]" } @rows), 'n_body_idx:index',
	'recall.purge() has no pages to visit for it, and reports its content index');
# handed to the sweep: marked unswept, or (the sweep being quick) swept again since
is( $node->safe_psql(
		$db,
		"SELECT count(*) FROM recall.sweep_state WHERE tbl = 'n'::regclass"
		  . " AND (last_sweep IS NULL OR last_sweep >= '$before_purge')"),
	'2',
	'it hands n\'s heap and TOAST relations to the sweep');
my $t1 = time;
my $done = 0;
while (time < $t1 + 30)
{
	$scan = scan_relations($node, $db, ['n'], { N => $N });
	if (hits($scan, 'N') == 0) { $done = 1; last; }
	usleep(200_000);
}
ok($done, 'the sweep and the rebuilder erased it from every file of n')
  or diag hit_report($scan, 'N');

# ---------------------------------------------------------------------------
# 5. trust: an index expression with the owner's function

$node->safe_psql(
	$db, q{
ALTER SYSTEM SET recall.sweep_interval = -1;
SELECT pg_reload_conf();
CREATE ROLE tenant LOGIN;
GRANT CREATE ON SCHEMA public TO tenant;
SET ROLE tenant;
CREATE FUNCTION probe(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql AS $f$
BEGIN
    RAISE LOG 'erasure-probe user=% super=%', current_user,
        (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user);
    RETURN t;
END
$f$;
CREATE TABLE tp (id int PRIMARY KEY, sender text, body text);
CREATE INDEX tp_probe_idx ON tp ((body || probe('x')));
SELECT recall.enable('tp', '{body}', sender => 'sender');
INSERT INTO tp VALUES (1, 'alice', 'one'), (2, 'bob', 'two');
RESET ROLE;
});
# the recall itself as the owner (an UPDATE evaluates the expression as
# whoever updates)
recall_with_residue($node, $db, 'tp', [1],
	"SET LOCAL ROLE tenant; SET LOCAL recall.actor = 'alice';"
	  . " SELECT recall.recall('tp', 1); RESET ROLE");
# (the helper computing the residue queried tp as a superuser, whose
# planner folds the expression: PostgreSQL's doing; look from here on)
my $probe_pos = -s $node->logfile;
my $probes = sub {
	my @l = slurp_file($node->logfile, $probe_pos) =~ /LOG:\s+erasure-probe user=(\S+) super=(\S+)/g;
	my @pairs;
	push @pairs, [ splice(@l, 0, 2) ] while @l;
	return @pairs;
};
my $n_before = scalar $probes->();
($ret, $out, $err) = $node->psql(
	$db,
	"SELECT pg_backend_pid(); SELECT relation || ':' || kind FROM recall.purge('tp') ORDER BY 1",
	connstr => $node->connstr($db) . ' user=tenant');
my ($purge_pid, @purged) = split /\n/, $out;
is(join("\n", @purged), "tp:heap\ntp_probe_idx:index",
	'the owner\'s purge finds the expression index holding the content')
  or diag $err;
# (the rebuilder may meanwhile rebuild the index, which evaluates it: only
# the purging backend's own lines count here)
is(scalar(() = slurp_file($node->logfile, $probe_pos) =~ /\[$purge_pid\][^\n]*erasure-probe/g), 0,
	'finding it evaluated nothing of the index expression');
ok(wait_rebuilt($node, $db, 'tp'), 'the rebuilder rebuilt tp_probe_idx');
my @calls = $probes->();
my @super = grep { $_->[1] ne 'f' || $_->[0] ne 'tenant' } @calls;
ok(@calls > $n_before, 'the rebuild evaluated the owner\'s function ('
	  . (@calls - $n_before) . ' calls)');
is(scalar @super, 0, 'always as the table\'s owner, never as a superuser')
  or diag explain \@super;

# ---------------------------------------------------------------------------
# 6. recall.purge_status is for recall_admin

$node->safe_psql($db, 'CREATE ROLE moderator LOGIN IN ROLE recall_admin');
($ret, $out, $err) = $node->psql(
	$db,
	"SELECT count(*) > 0 FROM recall.purge_status WHERE tbl = 'p'::regclass",
	connstr => $node->connstr($db) . ' user=moderator');
is($out, 't', 'a member of recall_admin reads recall.purge_status') or diag $err;
($ret, $out, $err) = $node->psql(
	$db,
	"\\set VERBOSITY verbose\nSELECT count(*) FROM recall.purge_status",
	connstr => $node->connstr($db) . ' user=tenant');
like($err, qr/ERROR:\s+42501:/, 'another role may not');

my $log = slurp_file($node->logfile);
unlike($log, qr/TRAP|terminated by signal|PANIC/, 'no crash in the server log');
$node->stop;
done_testing();
