# Copyright (c) pg_recall authors
#
# 051_node_pg.pl
#	  recall.recall from a real driver: node-postgres (npm package pg),
#	  installed by this test into a temporary directory.  node-postgres
#	  sends its parameters untyped (type 0 in Parse), which an anyelement
#	  argument cannot resolve (42804); recall.recall(regclass, text, ...)
#	  takes them.  Checked: a numeric id passed as a parameter recalls and
#	  returns true; a composite key passed as a JSON string; a uuid key; the
#	  actor and reason as parameters; recall_sender with every argument a
#	  parameter; the transaction form of recall.actor (set_config(..., true)
#	  with a parameter); and errors reach the driver with their SQLSTATE in
#	  err.code: 42501 for a refused recall (another sender's message, a
#	  recall.actor left over from an earlier transaction), P0002 for a
#	  missing message, 22023 for an id that is not of the key's type.
#
#	  Skipped when node or npm is missing; fails when npm cannot install pg.

use strict;
use warnings;

use File::Spec;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# node and npm, from PATH
sub find_program
{
	my ($name) = @_;
	foreach my $dir (File::Spec->path)
	{
		return "$dir/$name" if -x "$dir/$name";
	}
	return undef;
}
my $nodejs = find_program('node') // find_program('nodejs');
my $npm = find_program('npm');
plan skip_all => 'node or npm is not installed' unless $nodejs && $npm;

# ---------------------------------------------------------------------------
# the driver, in a directory of its own (a package.json there keeps npm
# from installing into a parent project)
my $dir = PostgreSQL::Test::Utils::tempdir();
append_to_file("$dir/package.json",
	qq{{"name": "pg-recall-driver-test", "private": true}\n});
my ($npm_out, $npm_err) = ('', '');
my $installed = IPC::Run::run(
	[
		$npm, 'install', '--no-audit', '--no-fund', '--loglevel=error',
		'--prefix', $dir, 'pg'
	],
	'>', \$npm_out, '2>', \$npm_err,
	IPC::Run::timeout(300));
if (!ok($installed && -f "$dir/node_modules/pg/package.json", 'npm installed pg'))
{
	diag("npm install pg failed:\n$npm_out$npm_err");
	done_testing();
	exit 0;
}

# ---------------------------------------------------------------------------
my $node = PostgreSQL::Test::Cluster->new('driver');
$node->init;
$node->start;
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_recall;
CREATE ROLE grace LOGIN;
CREATE ROLE moderator LOGIN IN ROLE recall_admin;

CREATE TABLE messages (
    id      bigint PRIMARY KEY,
    sender  text NOT NULL,
    body    text
);
INSERT INTO messages SELECT i, CASE WHEN i <= 20 THEN 'grace' ELSE 'heidi' END, 'text ' || i
FROM generate_series(1, 30) i;
SELECT recall.enable('messages', '{body}', sender => 'sender');

CREATE TABLE pairs (
    room    text,
    n       int,
    sender  text NOT NULL,
    body    text,
    PRIMARY KEY (room, n)
);
INSERT INTO pairs VALUES ('r1', 1, 'grace', 'p1'), ('r1', 2, 'grace', 'p2');
SELECT recall.enable('pairs', '{body}', sender => 'sender');

CREATE TABLE notes (
    id      uuid PRIMARY KEY,
    sender  text NOT NULL,
    body    text
);
INSERT INTO notes VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'grace', 'n1');
SELECT recall.enable('notes', '{body}', sender => 'sender');

GRANT SELECT, UPDATE ON messages, pairs, notes TO grace, moderator;
});

# ---------------------------------------------------------------------------
# The script: one JSON line per case, {"case", "ok", "rows"} or
# {"case", "ok": false, "code", "message"}.
append_to_file(
	"$dir/recall.js", <<'EOF');
const { Client } = require('pg');

function out(name, obj) {
  console.log(JSON.stringify(Object.assign({ case: name }, obj)));
}

async function attempt(client, name, sql, params) {
  try {
    const r = await client.query(sql, params);
    out(name, { ok: true, rows: r.rows });
  } catch (e) {
    out(name, { ok: false, code: e.code, message: e.message });
  }
}

async function connect(user) {
  const c = new Client({
    host: process.env.PGHOST, port: Number(process.env.PGPORT),
    database: 'postgres', user: user,
  });
  await c.connect();
  return c;
}

(async () => {
  // grace: her session_user is her actor, no setting needed
  const grace = await connect('grace');
  await attempt(grace, 'untyped id', "SELECT recall.recall('messages', $1) AS r", [1]);
  await attempt(grace, 'untyped id again', "SELECT recall.recall('messages', $1) AS r", [1]);
  await attempt(grace, 'string id', "SELECT recall.recall('messages', $1) AS r", ['2']);
  await attempt(grace, 'untyped id, actor, reason',
    "SELECT recall.recall('messages', $1, $2, $3) AS r", [3, 'grace', null]);
  await attempt(grace, 'composite key as JSON string',
    "SELECT recall.recall('pairs', $1) AS r", [JSON.stringify({ room: 'r1', n: 2 })]);
  await attempt(grace, 'uuid key', "SELECT recall.recall('notes', $1) AS r",
    ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']);
  await attempt(grace, 'typed id still works',
    "SELECT recall.recall('messages', $1::bigint) AS r", [4]);
  await attempt(grace, 'not the sender', "SELECT recall.recall('messages', $1) AS r", [21]);
  await attempt(grace, 'missing message', "SELECT recall.recall('messages', $1) AS r", [999]);
  await attempt(grace, 'id of another type', "SELECT recall.recall('messages', $1) AS r", ['x5']);

  // a session-level SET outlives its transaction: refused later
  await attempt(grace, 'session SET', "SET recall.actor = 'grace'", []);
  await attempt(grace, 'leftover actor', "SELECT recall.recall('messages', $1) AS r", [5]);
  // the transaction form, with the actor as a parameter
  await attempt(grace, 'begin', 'BEGIN', []);
  await attempt(grace, 'set_config local', "SELECT set_config('recall.actor', $1, true) AS a", ['grace']);
  await attempt(grace, 'recall in the transaction', "SELECT recall.recall('messages', $1) AS r", [5]);
  await attempt(grace, 'commit', 'COMMIT', []);
  await grace.end();

  // an admin's bulk recall, every argument a parameter
  const mod = await connect('moderator');
  await attempt(mod, 'recall_sender',
    'SELECT recall.recall_sender($1, $2, $3, $4, $5) AS n', ['messages', 'heidi', 'spam', null, null]);
  await mod.end();
})().catch((e) => { console.error(e); process.exit(1); });
EOF

my ($out, $err) = ('', '');
my $ran;
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	$ran = IPC::Run::run([ $nodejs, "$dir/recall.js" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
}
ok($ran, 'the node script ran') or diag("stdout:\n$out\nstderr:\n$err");

my %result;
foreach my $line (split /\n/, $out)
{
	my $r = eval { decode_json($line) };
	$result{ $r->{case} } = $r if $r;
}

# Check one case: ok with the given first value, or failed with a code.
sub check_value
{
	my ($name, $column, $expected) = @_;
	my $r = $result{$name};
	ok($r && $r->{ok}, "$name: no error") or diag(explain $r);
	my $got = $r && $r->{rows} && $r->{rows}[0] ? $r->{rows}[0]{$column} : undef;
	is(JSON::PP->new->allow_nonref->encode($got),
		JSON::PP->new->allow_nonref->encode($expected), "$name: $column");
}

sub check_code
{
	my ($name, $code) = @_;
	my $r = $result{$name};
	ok($r && !$r->{ok}, "$name: error") or diag(explain $r);
	is($r ? $r->{code} : undef, $code, "$name: err.code $code");
	return $r;
}

check_value('untyped id', 'r', JSON::PP::true);
check_value('untyped id again', 'r', JSON::PP::false);
check_value('string id', 'r', JSON::PP::true);
check_value('untyped id, actor, reason', 'r', JSON::PP::true);
check_value('composite key as JSON string', 'r', JSON::PP::true);
check_value('uuid key', 'r', JSON::PP::true);
check_value('typed id still works', 'r', JSON::PP::true);
check_code('not the sender', '42501');
check_code('missing message', 'P0002');
check_code('id of another type', '22023');
my $left = check_code('leftover actor', '42501');
like($left ? $left->{message} : '', qr/from an earlier transaction/,
	'leftover actor: refused as left over');
check_value('recall in the transaction', 'r', JSON::PP::true);
check_value('recall_sender', 'n', '10');

# what the database holds
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(id::text || ':' || recalled_by, ',' ORDER BY id) FROM messages"
		  . " WHERE recalled_at IS NOT NULL AND sender = 'grace'"),
	'1:grace,2:grace,3:grace,4:grace,5:grace',
	'grace recalled messages 1 to 5, as grace');
is( $node->safe_psql(
		'postgres',
		"SELECT count(*) FILTER (WHERE recalled_at IS NOT NULL), count(*)"
		  . " FILTER (WHERE body IS NOT NULL) FROM messages WHERE sender = 'heidi'"),
	'10|0', "recall_sender recalled heidi's 10 messages");
is( $node->safe_psql(
		'postgres',
		"SELECT string_agg(room || n || ':' || (recalled_at IS NOT NULL), ',' ORDER BY room, n) FROM pairs"),
	'r11:false,r12:true', 'composite key: only (r1, 2) recalled');
is($node->safe_psql('postgres', 'SELECT recalled_by FROM notes'),
	'grace', 'uuid key: recalled');

done_testing();
