# Copyright (c) pg_recall authors
#
# 040_security.pl
#	  The adversarial cases of issue 12 that need the background workers,
#	  the server log or a dump (the others are in sql/security*.sql).  The
#	  attacker is a role that owns its tables and nothing more
#	  (SecurityKit.pm, test/security_payload.psql):
#	  - 2, 3: the purger worker erases recalled content in a database whose
#	    owner (the attacker) set its search_path to put its own max(xid8),
#	    "/", "=" ... first, with a table whose content column is indexed
#	    through the attacker's IMMUTABLE function: the worker never runs
#	    any of it as a superuser, and it still purges;
#	  - 7: a temporary table enabled (or tried) by a session that ended
#	    does not stop the purger from purging another role's table;
#	  - 13, 15: neither the invariant's error (23514) nor a refused recall
#	    whose actor comes from a superuser-only setting puts the content
#	    or the setting's value into the server log (or the client's error);
#	  - 17: a table whose content column is a NOT NULL domain survives
#	    pg_dump and pg_restore with recalled rows in it;
#	  - 18 (build time): the README's Security model section says which
#	    PostgreSQL majors are tested.
#	  Every statement is logged (Cluster.pm sets log_statement = all), so
#	  the markers are built by the server from pieces: only pg_recall could
#	  write them whole.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SecurityKit;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('security');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
recall.purge_delay = '1s'
});
$node->start;

my $tempdir = PostgreSQL::Test::Utils::tempdir;
my $su = $node->safe_psql('postgres', 'SELECT current_user');

# ---------------------------------------------------------------------------
# 2, 3: the purger in a database whose owner is the attacker

$node->safe_psql(
	'postgres', qq{
CREATE ROLE $ATTACKER LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION;
CREATE ROLE regress_sec_other LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION;
CREATE DATABASE tenant OWNER $ATTACKER;
});
$node->safe_psql('tenant', 'CREATE EXTENSION pg_recall');
attacker_kit($node, 'tenant');
query_as(
	$node, 'tenant', $ATTACKER, q{
CREATE TABLE regress_sec.m2 (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.m3 (id int PRIMARY KEY, sender text, body text);
CREATE INDEX m3_expr ON regress_sec.m3 ((body || regress_sec.imm('expression')));
CREATE INDEX m3_pred ON regress_sec.m3 (id) WHERE body <> regress_sec.imm('predicate');
SELECT recall.enable('regress_sec.m2', '{body}', sender => 'sender');
SELECT recall.enable('regress_sec.m3', '{body}', sender => 'sender');
-- the database's owner may set its search_path: every new session,
-- background workers included, puts the attacker's schema first
ALTER DATABASE tenant SET search_path = regress_sec, pg_catalog;
});
# new workers, that read the database's settings
$node->restart;
my $log_offset = -s $node->logfile;
query_as(
	$node, 'tenant', $ATTACKER, q{
INSERT INTO regress_sec.m2 VALUES (1, current_user, 'c2-' || 'secret');
INSERT INTO regress_sec.m3 VALUES (1, current_user, 'c3-' || 'secret');
UPDATE regress_sec.m2 SET recalled_at = pg_catalog.now() WHERE id = 1;
UPDATE regress_sec.m3 SET recalled_at = pg_catalog.now() WHERE id = 1;
});
ok( wait_until(
		$node, 'tenant',
		"SELECT count(*) = 2 FROM recall.purge_state"
		  . " WHERE tbl IN ('regress_sec.m2'::regclass, 'regress_sec.m3'::regclass)"
		  . " AND purged_at IS NOT NULL"),
	'2, 3: the purger purged both tables of the database');
my $superuser = $node->safe_psql('postgres',
	"SELECT rolsuper FROM pg_roles WHERE rolname = '$ATTACKER'");
is($superuser, 'f', '2, 3: the attacker is not superuser');
is(payloads_not_as_attacker($node, 'tenant', 'shadow %'),
	'', "2: the purger ran none of the attacker's operators as another role");
is(payloads_not_as_attacker($node, 'tenant', 'index %'),
	'', "3: the purger evaluated no index function of the attacker's as another role");
my @foreign =
  grep { !/ran as $ATTACKER \(/ } (log_since($node, $log_offset) =~ /^.*regress_sec payload .* ran as .*$/mg);
is(join("\n", @foreign), '', '2, 3: the server log shows no payload run as another role');
# take a successful attack back, so that the rest starts clean
$node->safe_psql('postgres', qq{
ALTER ROLE $ATTACKER NOSUPERUSER;
ALTER DATABASE tenant RESET search_path;
});

# ---------------------------------------------------------------------------
# 7: a temporary table's registration does not jam the purger

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION pg_recall;
CREATE SCHEMA regress_sec_other AUTHORIZATION regress_sec_other;
CREATE SCHEMA regress_sec AUTHORIZATION $ATTACKER;
});
query_as(
	$node, 'postgres', 'regress_sec_other', q{
CREATE TABLE regress_sec_other.m7 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec_other.m7 VALUES (1, 'regress_sec_other', 'c7-' || 'secret');
SELECT recall.enable('regress_sec_other.m7', '{body}', sender => 'sender');
});
my $temp_enable = sqlstate_of(
	$node, 'postgres', $ATTACKER, q{
CREATE TEMP TABLE t7 (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('pg_temp.t7', '{body}', sender => 'sender');
});
is($temp_enable, '0A000', '7: enable refuses a temporary table');
ok( wait_until(
		$node, 'postgres',
		"SELECT count(*) = 0 FROM pg_class WHERE relname = 't7' AND relpersistence = 't'"),
	'7: the temporary table is gone with its session');
query_as($node, 'postgres', 'regress_sec_other',
	'UPDATE regress_sec_other.m7 SET recalled_at = now() WHERE id = 1');
ok( wait_until(
		$node, 'postgres',
		"SELECT count(*) = 1 FROM recall.purge_state"
		  . " WHERE tbl = 'regress_sec_other.m7'::regclass AND purged_at IS NOT NULL"),
	"7: the purger still purges another role's table");
is(sqlstate_of($node, 'postgres', 'regress_sec_other', 'SELECT count(*) FROM recall.purge()'),
	'ok', '7: recall.purge() still works for another role');

# ---------------------------------------------------------------------------
# 13: the invariant's error shows no content, to the client or in the log

query_as(
	$node, 'postgres', $ATTACKER, q{
CREATE TABLE regress_sec.e13 (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('regress_sec.e13', '{body}', sender => 'sender');
INSERT INTO regress_sec.e13 VALUES (1, current_user, 'c13-' || 'secret-' || 'tap');
});
my $marker13 = 'c13-secret-tap';
$log_offset = -s $node->logfile;
my ($ret, $out, $err) = psql_as(
	$node, 'postgres', $ATTACKER, q{
INSERT INTO regress_sec.e13 (id, sender, body, recalled_at)
VALUES (2, current_user, 'c13-' || 'secret-' || 'tap', now());
});
like($err, qr/ERROR:\s+23514:/, '13: a recalled row with content is refused (23514)');
is(lines_with($err, $marker13), '', "13: the client's error does not show the content");
($ret, $out, $err) = psql_as(
	$node, 'postgres', $su, q{
SET session_replication_role = replica;
UPDATE regress_sec.e13 SET recalled_at = now() WHERE id = 1;
});
like($err, qr/ERROR:\s+23514:/, '13: in replica mode too (23514)');
is(lines_with($err, $marker13), '', "13: the client's error does not show the content (replica)");
is(lines_with(log_since($node, $log_offset), $marker13),
	'', '13: the server log does not show the content');

# ---------------------------------------------------------------------------
# 15: a superuser-only setting as the actor's source

my $datadir = $node->safe_psql('postgres', 'SHOW data_directory');
query_as(
	$node, 'postgres', $ATTACKER, q{
CREATE TABLE regress_sec.m15 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m15 VALUES (1, current_user, 'c15-' || 'secret');
SELECT recall.enable('regress_sec.m15', '{body}', sender => 'sender',
                     actor_source => 'setting', actor_setting => 'data_directory');
});
$log_offset = -s $node->logfile;
($ret, $out, $err) = psql_as($node, 'postgres', $ATTACKER,
	'UPDATE regress_sec.m15 SET recalled_at = now() WHERE id = 1');
like($err, qr/ERROR:\s+42501:/, '15: the recall is refused for want of an identity (42501)');
is(lines_with($err, $datadir), '', "15: the client's error does not show the setting's value");
($ret, $out, $err) = psql_as($node, 'postgres', $ATTACKER,
	"UPDATE regress_sec.m15 SET recalled_at = now(), recalled_by = 'someone' WHERE id = 1");
is(lines_with($err, $datadir), '', "15: nor does an impersonation attempt's");
is(lines_with(log_since($node, $log_offset), $datadir),
	'', "15: the server log does not show the setting's value");
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FROM regress_sec.m15 WHERE strpos(coalesce(recalled_by, ''), '$datadir') > 0"
	),
	'0',
	"15: recalled_by does not hold the setting's value");

# ---------------------------------------------------------------------------
# 17: a NOT NULL domain content column, through pg_dump and pg_restore

$node->safe_psql('postgres', 'CREATE DATABASE dumpsrc');
$node->safe_psql(
	'dumpsrc', q{
CREATE EXTENSION pg_recall;
CREATE DOMAIN nn_text AS text NOT NULL;
CREATE TABLE m17 (id int PRIMARY KEY, sender text, body nn_text);
INSERT INTO m17 VALUES (1, 'alice', 'c17-' || 'secret'), (2, 'alice', 'kept');
SELECT recall.enable('m17', '{body}', sender => 'sender');
SET recall.actor_scope = 'session';
SET recall.actor = 'alice';
UPDATE m17 SET recalled_at = now() WHERE id = 1;
});
is($node->safe_psql('dumpsrc', "SELECT body IS NOT NULL AND body = '' FROM m17 WHERE id = 1"),
	't', "17: the NOT NULL domain column is wiped to ''");
my $dump = "$tempdir/m17.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('dumpsrc') ],
	'17: pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE dumpdst');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dumpdst'), $dump ],
	'17: pg_restore loads the recalled rows back');
is( $node->safe_psql(
		'dumpdst',
		"SELECT string_agg(id || ':' || body || ':' || (recalled_at IS NOT NULL), ',' ORDER BY id) FROM m17"
	),
	'1::true,2:kept:false',
	'17: the restored rows are those dumped');

# ---------------------------------------------------------------------------
# 18: which majors are tested is written down

my $readme = slurp_file(($ENV{TESTDIR} // '.') . '/README.md');
my ($section) = $readme =~ /^## Security model\n(.*?)(?=^## |\z)/ms;
ok(defined $section, '18: the README has a Security model section');
like($section // '', qr/\btested\b/i, '18: it says what is tested');
like($section // '', qr/PostgreSQL[^.]*\b15\b/, '18: it names the PostgreSQL majors (15)');

# ---------------------------------------------------------------------------
my @crashes = crashes_in(log_since($node, 0));
is(join("\n", @crashes), '', 'no server process crashed');

$node->stop;
done_testing();
