# Copyright (c) pg_recall authors
#
# 001_dump_restore.pl
#	  A database with enabled tables survives pg_dump and restore: the
#	  registry (actor source included), the triggers, the CHECK constraint,
#	  the view and the audit trail come back, recall is still enforced, and
#	  the objects pg_recall created on user tables are not extension members
#	  (so pg_dump carries them like any other object).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

my $tempdir = PostgreSQL::Test::Utils::tempdir;

# psql as a given user; returns (exit code, stdout, stderr) with verbose
# errors, so that stderr carries the SQLSTATE ("ERROR:  42501: ...").
sub psql_as
{
	my ($db, $user, $sql) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		connstr => $node->connstr($db) . " user=$user",
		stdout => \$out,
		stderr => \$err);
	return ($ret, $out, $err);
}

# SQLSTATE of the first error $sql raises, or 'none'.
sub sqlstate_of
{
	my ($db, $user, $sql) = @_;
	my ($ret, $out, $err) = psql_as($db, $user, $sql);
	return $err =~ /ERROR:\s+([0-9A-Z]{5}):/ ? $1 : 'none';
}

# stdout of $sql as a given user; dies on error.
sub query_as
{
	my ($db, $user, $sql) = @_;
	my ($ret, $out, $err) = psql_as($db, $user, $sql);
	die "query as $user failed: $sql\n$err" if $ret != 0;
	return $out;
}

# --- the source database ---------------------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql(
	'src', q{
CREATE EXTENSION pg_recall;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE moderator LOGIN IN ROLE recall_admin;

-- a plain table with a primary key
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint NOT NULL,
    sender       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    body         text,
    attachment   bytea
);
-- keyed by its replica identity index, with a NOT NULL tombstone default
CREATE TABLE legacy (
    room    text NOT NULL,
    seq     integer NOT NULL,
    sender  text NOT NULL,
    body    text NOT NULL DEFAULT '[recalled]'
);
CREATE UNIQUE INDEX legacy_room_seq ON legacy (room, seq);
ALTER TABLE legacy REPLICA IDENTITY USING INDEX legacy_room_seq;
-- partitioned
CREATE TABLE parted (
    conversation bigint NOT NULL,
    id           bigint NOT NULL,
    sender       text NOT NULL,
    body         jsonb,
    PRIMARY KEY (conversation, id)
) PARTITION BY LIST (conversation);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
-- actor from a JSON claim of a setting (PostgREST/Supabase)
CREATE TABLE claimed (
    id     integer PRIMARY KEY,
    sender text NOT NULL,
    body   text
);
-- actor from the database role
CREATE TABLE by_role (
    id     integer PRIMARY KEY,
    sender text NOT NULL,
    body   text
);

GRANT SELECT, INSERT, UPDATE ON messages, legacy, parted, claimed, by_role
    TO alice, bob, moderator;

SELECT recall.enable('messages', '{body,attachment}', sender => 'sender',
                     sent_at => 'created_at', conversation => 'conversation',
                     recall_window => '1 day');
SELECT recall.enable('legacy', '{body}', sender => 'sender', conversation => 'room');
SELECT recall.enable('parted', '{body}', sender => 'sender', conversation => 'conversation');
SELECT recall.enable('claimed', '{body}', sender => 'sender',
                     actor_source => 'setting',
                     actor_setting => 'request.jwt.claims', actor_claim => 'sub');
SELECT recall.enable('by_role', '{body}', sender => 'sender', actor_source => 'role');

-- views get the table's grants
GRANT SELECT ON messages_visible, legacy_visible, parted_visible,
                claimed_visible, by_role_visible TO alice, bob, moderator;

INSERT INTO messages (id, conversation, sender, body, attachment) VALUES
    (1, 7, 'alice', 'alice one', '\x0102'),
    (2, 7, 'alice', 'alice two', NULL),
    (3, 7, 'bob',   'bob three', '\x03'),
    (4, 8, 'bob',   'bob four',  NULL),
    (5, 8, 'alice', 'alice five', NULL);
INSERT INTO legacy VALUES ('r1', 1, 'alice', 'legacy one'), ('r1', 2, 'bob', 'legacy two');
INSERT INTO parted VALUES (1, 1, 'alice', '{"t": "p one"}'), (2, 2, 'bob', '{"t": "p two"}'),
                          (2, 3, 'alice', '{"t": "p three"}');
INSERT INTO claimed VALUES (1, 'alice', 'claimed one'), (2, 'bob', 'claimed two');
INSERT INTO by_role VALUES (1, 'alice', 'role one'), (2, 'bob', 'role two');
});

# a recalled row: alice recalls her own message
is(query_as('src', 'alice', q{SELECT recall.recall('messages'::regclass, 1)}),
	't', 'src: alice recalls her own message');
# an audit row: an admin recall with a reason
query_as('src', 'moderator',
	q{SELECT recall.recall('messages'::regclass, 4, reason => 'spam')});
is( $node->safe_psql(
		'src', q{SELECT action, tbl, pk, actor, db_role, reason FROM recall.audit}),
	'recall|messages|{"id": 4}|moderator|moderator|spam',
	'src: admin recall wrote an audit row');

# what must come back, read from the source
my $registry_sql = q{
SELECT tbl, key_columns, content, wiped_values, sender, sent_at, sent_at_unit,
       conversation, recall_window, channel, on_recalled_write,
       actor_source, actor_setting, actor_claim, view_name
FROM recall.tables ORDER BY tbl::text};
my $triggers_sql = q{
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE t.tgname LIKE '~recall%'
ORDER BY 1, 2};
my $constraints_sql = q{
SELECT c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated
FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
WHERE k.conname = 'recall_wiped'
ORDER BY 1};
my $views_sql = q{
SELECT c.relname, c.reloptions, pg_get_viewdef(c.oid)
FROM pg_class c
WHERE c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace
ORDER BY 1};
my $rows_sql = q{
SELECT 'messages', id::text, sender, body, encode(attachment, 'hex'),
       recalled_at IS NOT NULL, recalled_by, recall_reason FROM messages
UNION ALL
SELECT 'legacy', room || '/' || seq, sender, body, NULL,
       recalled_at IS NOT NULL, recalled_by, recall_reason FROM legacy
UNION ALL
SELECT 'parted', conversation || '/' || id, sender, body::text, NULL,
       recalled_at IS NOT NULL, recalled_by, recall_reason FROM parted
UNION ALL
SELECT 'claimed', id::text, sender, body, NULL,
       recalled_at IS NOT NULL, recalled_by, recall_reason FROM claimed
UNION ALL
SELECT 'by_role', id::text, sender, body, NULL,
       recalled_at IS NOT NULL, recalled_by, recall_reason FROM by_role
ORDER BY 1, 2};
my $audit_sql = q{
SELECT at, xid, action, tbl, pk, actor, db_role, reason FROM recall.audit ORDER BY at};

# objects pg_recall created on user tables that are extension members
my $members_sql = q{
SELECT count(*) FROM pg_depend d
WHERE d.deptype = 'e'
  AND ((d.classid = 'pg_trigger'::regclass
        AND d.objid IN (SELECT oid FROM pg_trigger WHERE tgname LIKE '~recall%'))
    OR (d.classid = 'pg_constraint'::regclass
        AND d.objid IN (SELECT oid FROM pg_constraint WHERE conname = 'recall_wiped'))
    OR (d.classid = 'pg_class'::regclass
        AND d.objid IN (SELECT oid FROM pg_class
                        WHERE relnamespace = 'public'::regnamespace)))};

my %src;
$src{registry}    = $node->safe_psql('src', $registry_sql);
$src{triggers}    = $node->safe_psql('src', $triggers_sql);
$src{constraints} = $node->safe_psql('src', $constraints_sql);
$src{views}       = $node->safe_psql('src', $views_sql);
$src{rows}        = $node->safe_psql('src', $rows_sql);
$src{audit}       = $node->safe_psql('src', $audit_sql);

like($src{registry}, qr/^claimed\|.*\|setting\|request\.jwt\.claims\|sub\|claimed_visible$/m,
	'src: claimed table uses the setting source');
like($src{registry}, qr/^by_role\|.*\|role\|\|\|by_role_visible$/m,
	'src: by_role table uses the role source');
is($node->safe_psql('src', $members_sql), '0',
	'src: triggers, constraints, views and tables are not extension members');

# --- dump, and restore twice (custom format and plain SQL) -----------------

my $dump_custom = "$tempdir/src.dump";
my $dump_plain  = "$tempdir/src.sql";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump_custom, '-d', 'src' ],
	'pg_dump -Fc');
$node->command_ok([ 'pg_dump', '-Fp', '-f', $dump_plain, '-d', 'src' ],
	'pg_dump plain');

my $plain = slurp_file($dump_plain);
like($plain, qr/CREATE TRIGGER "~recall_guard" BEFORE INSERT OR UPDATE ON public\.messages/,
	'dump holds the guard trigger');
like($plain, qr/ENABLE ALWAYS TRIGGER "~recall_guard"/,
	'dump keeps the guard firing always');
unlike($plain, qr/CONSTRAINT recall_wiped CHECK/, 'dump holds no CHECK (the guard holds the invariant)');
like($plain, qr/CREATE VIEW public\.messages_visible/, 'dump holds the view');
unlike($plain, qr/alice one|bob four/,
	'dump holds no recalled content');

$node->safe_psql('postgres', 'CREATE DATABASE dst_custom');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', 'dst_custom', $dump_custom ],
	'pg_restore into a new database');

$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
$node->command_ok(
	[
		'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'dst_plain',
		'-f', $dump_plain
	],
	'psql restore of the plain dump into a new database');

foreach my $db ('dst_custom', 'dst_plain')
{
	is($node->safe_psql($db, $registry_sql),
		$src{registry}, "$db: registry rows back, actor sources included");
	is($node->safe_psql($db, $triggers_sql),
		$src{triggers}, "$db: ~recall_guard back, firing always");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
			       WHERE tgrelid = 'messages'::regclass AND tgname LIKE '~recall%'}),
		'~recall_guard',
		"$db: messages has its guard trigger");
	is( $node->safe_psql(
			$db, q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
			       WHERE tgrelid = 'parted_2'::regclass AND tgname LIKE '~recall%'}),
		'~recall_guard',
		"$db: partitions carry the cloned guard trigger");
	is($node->safe_psql($db, $constraints_sql),
		$src{constraints}, "$db: constraints back as they were");
	is($node->safe_psql($db, $views_sql),
		$src{views}, "$db: views back, security_invoker kept");
	is($node->safe_psql($db, $rows_sql), $src{rows}, "$db: rows identical");
	is($node->safe_psql($db, $audit_sql), $src{audit}, "$db: audit row kept");
	is($node->safe_psql($db, $members_sql),
		'0', "$db: triggers, constraints and views are not extension members");
	is( $node->safe_psql(
			$db, q{SELECT count(*) FROM pg_depend d
			       JOIN pg_extension e ON e.oid = d.refobjid AND d.refclassid = 'pg_extension'::regclass
			       WHERE e.extname = 'pg_recall' AND d.deptype = 'e'
			         AND d.classid = 'pg_class'::regclass
			         AND d.objid IN ('recall.tables'::regclass, 'recall.events'::regclass,
			                         'recall.audit'::regclass)}),
		'3', "$db: the recall schema's tables are still extension members");

	# the recalled row is still wiped and hidden
	is( $node->safe_psql(
			$db, q{SELECT body IS NULL, attachment IS NULL, recalled_at IS NOT NULL, recalled_by
			       FROM messages WHERE id = 1}),
		't|t|t|alice', "$db: recalled row still wiped");
	is($node->safe_psql($db, q{SELECT string_agg(id::text, ',' ORDER BY id) FROM messages_visible}),
		'2,3,5', "$db: view hides recalled rows");

	# --- recall still enforced --------------------------------------------

	my $seq_before = $node->safe_psql($db,
		'SELECT coalesce(max(seq), 0) FROM recall.events');

	# statement source: bob may not recall alice's message
	is(sqlstate_of($db, 'bob', q{UPDATE messages SET recalled_at = now() WHERE id = 2}),
		'42501', "$db: recall of another's message by UPDATE refused");
	is(sqlstate_of($db, 'bob', q{SELECT recall.recall('messages'::regclass, 2)}),
		'42501', "$db: recall.recall of another's message refused");
	is(sqlstate_of($db, 'moderator', q{SELECT recall.recall('messages'::regclass, 2)}),
		'42501', "$db: admin recall without a reason refused");
	# alice may
	is(query_as($db, 'alice', q{SELECT recall.recall('messages'::regclass, 2)}),
		't', "$db: own recall allowed");
	is( $node->safe_psql(
			$db, q{SELECT body IS NULL, attachment IS NULL, recalled_at IS NOT NULL, recalled_by
			       FROM messages WHERE id = 2}),
		't|t|t|alice', "$db: own recall wiped the row");
	is(query_as($db, 'alice', q{UPDATE messages SET recalled_at = now() WHERE id = 5}),
		'', "$db: own recall by UPDATE allowed");
	is($node->safe_psql($db, q{SELECT body IS NULL FROM messages WHERE id = 5}),
		't', "$db: own recall by UPDATE wiped the row");
	is( $node->safe_psql(
			$db, qq{SELECT string_agg(tbl || ':' || pk::text || ':' || actor || ':' || privileged
			                          || ':' || coalesce(conversation, '-'), ',' ORDER BY seq)
			        FROM recall.events WHERE seq > $seq_before}),
		'messages:{"id": 2}:alice:false:7,messages:{"id": 5}:alice:false:8',
		"$db: each own recall wrote one event, the refused ones none");

	# a recalled row stays recalled
	is(sqlstate_of($db, 'alice', q{UPDATE messages SET body = 'back' WHERE id = 1}),
		'55000', "$db: edit of the restored recalled row refused");
	# the CHECK holds with triggers bypassed
	is( sqlstate_of(
			$db, $node->safe_psql('postgres', 'SELECT current_user'),
			q{SET session_replication_role = replica;
			  UPDATE messages SET recalled_at = now() WHERE id = 3}),
		'23514', "$db: CHECK recall_wiped enforced on the restored table");

	# replica identity keyed table: NOT NULL content wiped to its default
	is(sqlstate_of($db, 'bob', q{UPDATE legacy SET recalled_at = now() WHERE room = 'r1' AND seq = 1}),
		'42501', "$db: legacy: recall of another's message refused");
	query_as($db, 'alice', q{SELECT recall.recall('legacy'::regclass, '{"room": "r1", "seq": 1}'::jsonb)});
	is( $node->safe_psql(
			$db, q{SELECT body, recalled_by FROM legacy WHERE room = 'r1' AND seq = 1}),
		'[recalled]|alice', "$db: legacy: own recall wiped to the default");

	# partitioned table
	is(sqlstate_of($db, 'alice', q{UPDATE parted SET recalled_at = now() WHERE id = 2}),
		'42501', "$db: parted: recall of another's message refused");
	query_as($db, 'bob', q{UPDATE parted SET recalled_at = now() WHERE id = 2});
	is( $node->safe_psql(
			$db, q{SELECT body IS NULL, recalled_by FROM parted WHERE id = 2}),
		't|bob', "$db: parted: own recall wiped");

	# setting source with a claim
	is( sqlstate_of(
			$db, 'bob',
			q{SET request.jwt.claims = '{"sub": "bob"}';
			  SELECT recall.recall('claimed'::regclass, 1)}),
		'42501', "$db: claimed: recall of another's message refused");
	is( sqlstate_of(
			$db, 'bob',
			q{SET request.jwt.claims = '{"sub": "bob"}';
			  UPDATE claimed SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1}),
		'42501', "$db: claimed: impersonation refused");
	is(sqlstate_of($db, 'alice', q{UPDATE claimed SET recalled_at = now() WHERE id = 1}),
		'42501', "$db: claimed: missing identity refused");
	query_as($db, 'bob',
		q{SET request.jwt.claims = '{"sub": "alice"}';
		  UPDATE claimed SET recalled_at = now() WHERE id = 1});
	is( $node->safe_psql(
			$db, q{SELECT body IS NULL, recalled_by FROM claimed WHERE id = 1}),
		't|alice', "$db: claimed: the claim's sender recalls, recalled_by from the claim");

	# role source
	is( sqlstate_of(
			$db, 'bob',
			q{SET recall.actor = 'alice'; UPDATE by_role SET recalled_at = now() WHERE id = 1}),
		'42501', "$db: by_role: impersonation through recall.actor refused");
	is(sqlstate_of($db, 'bob', q{UPDATE by_role SET recalled_at = now() WHERE id = 1}),
		'42501', "$db: by_role: recall of another's message refused");
	query_as($db, 'alice', q{UPDATE by_role SET recalled_at = now() WHERE id = 1});
	is( $node->safe_psql(
			$db, q{SELECT body IS NULL, recalled_by FROM by_role WHERE id = 1}),
		't|alice', "$db: by_role: own recall by role");

	# nothing refused above changed a row
	is( $node->safe_psql(
			$db, q{SELECT string_agg(tbl || ':' || k, ',' ORDER BY tbl, k) FROM (
			         SELECT 'messages' AS tbl, id::text AS k FROM messages WHERE recalled_at IS NULL
			         UNION ALL SELECT 'legacy', room || '/' || seq FROM legacy WHERE recalled_at IS NULL
			         UNION ALL SELECT 'parted', id::text FROM parted WHERE recalled_at IS NULL
			         UNION ALL SELECT 'claimed', id::text FROM claimed WHERE recalled_at IS NULL
			         UNION ALL SELECT 'by_role', id::text FROM by_role WHERE recalled_at IS NULL) s}),
		'by_role:2,claimed:2,legacy:r1/2,messages:3,parted:1,parted:3',
		"$db: refused recalls changed nothing");
}

$node->stop;
done_testing();
