# Copyright (c) pg_recall authors
#
# 050_pgbouncer.pl
#	  recall.actor behind a real pgbouncer in transaction pooling mode, with
#	  one server connection per database (default_pool_size = 1), so that
#	  every client's transactions run on the same server session.
#
#	  The leak: client A makes a session-level SET recall.actor = 'grace';
#	  client B, which never named an actor, then recalls one of grace's
#	  messages on the same server connection.  Under recall.actor_scope =
#	  'transaction' (the default) B's recall is refused with 42501 and a LOG
#	  line, and the row stays as it was; under 'session' (set here per
#	  database, as an operator would) it is accepted and recorded as grace,
#	  which is the leak the setting exists for.  The transaction form
#	  (BEGIN; SET LOCAL recall.actor ...; recall; COMMIT, or
#	  set_config(..., true)) works through pgbouncer and leaves nothing
#	  behind for the next client.
#
#	  Skipped when pgbouncer is not installed (Debian package pgbouncer,
#	  installed by scripts/setup.sh).

use strict;
use warnings;

use File::Spec;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# pgbouncer lives in sbin on Debian, which a test's PATH may lack.
my $pgbouncer;
foreach my $dir (File::Spec->path, '/usr/sbin', '/usr/local/sbin')
{
	my $candidate = "$dir/pgbouncer";
	if (-x $candidate)
	{
		$pgbouncer = $candidate;
		last;
	}
}
plan skip_all => 'pgbouncer is not installed (Debian package pgbouncer)'
  unless defined $pgbouncer;

my $node = PostgreSQL::Test::Cluster->new('pooled');
$node->init;
$node->start;

# Two databases behind the pooler: txdb keeps the default scope, sessdb is
# set to 'session' the way an operator would (per database or per role, so
# that no client's SET can change it for the others).
$node->safe_psql(
	'postgres', q{
CREATE ROLE app LOGIN;
CREATE DATABASE txdb;
CREATE DATABASE sessdb;
ALTER DATABASE sessdb SET recall.actor_scope = 'session';
});
foreach my $db ('txdb', 'sessdb')
{
	$node->safe_psql(
		$db, q{
CREATE EXTENSION pg_recall;
CREATE TABLE messages (
    id      bigint PRIMARY KEY,
    sender  text NOT NULL,
    body    text
);
INSERT INTO messages SELECT i, 'grace', 'text ' || i FROM generate_series(1, 10) i;
SELECT recall.enable('messages', '{body}', sender => 'sender');
GRANT SELECT, UPDATE ON messages TO app;
});
}

# ---------------------------------------------------------------------------
# pgbouncer: its own port and socket directory, no TCP listener, trust
# authentication (a user must still be listed in auth_file)
my $bdir = PostgreSQL::Test::Utils::tempdir_short();
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $server = 'host=' . $node->host . ' port=' . $node->port;
append_to_file("$bdir/userlist.txt", qq{"app" ""\n});
append_to_file(
	"$bdir/pgbouncer.ini", qq{
[databases]
txdb = $server dbname=txdb
sessdb = $server dbname=sessdb

[pgbouncer]
listen_port = $bport
unix_socket_dir = $bdir
auth_type = trust
auth_file = $bdir/userlist.txt
pool_mode = transaction
default_pool_size = 1
max_client_conn = 20
ignore_startup_parameters = extra_float_digits
logfile = $bdir/pgbouncer.log
pidfile = $bdir/pgbouncer.pid
});

my ($bout, $berr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$bdir/pgbouncer.ini" ],
	'>', \$bout, '2>', \$berr);
END
{
	if (defined $bouncer)
	{
		$bouncer->signal('INT');
		$bouncer->finish;
	}
}

# A client connection string through pgbouncer.
sub pooled
{
	my ($db) = @_;
	return "host=$bdir port=$bport dbname=$db user=app";
}

# Wait until pgbouncer accepts connections (it reaches the server lazily).
my $ready = 0;
foreach my $i (1 .. 100)
{
	if ($node->psql('txdb', 'SELECT 1', connstr => pooled('txdb')) == 0)
	{
		$ready = 1;
		last;
	}
	usleep(100_000);
}
ok($ready, 'pgbouncer accepts connections')
  or diag("pgbouncer output:\n$bout$berr\n"
	  . (-f "$bdir/pgbouncer.log" ? slurp_file("$bdir/pgbouncer.log") : ''));

# A client: a background psql through pgbouncer.  Errors do not end it and
# are shown with their SQLSTATE.
sub client
{
	my ($db) = @_;
	my $c = $node->background_psql(
		$db,
		on_error_stop => 0,
		extra_params => [ '-d', pooled($db) ]);
	$c->query_safe('\set VERBOSITY verbose');
	return $c;
}

# Run a query in a client: (output, error text), and forget the error.
sub run
{
	my ($c, $sql) = @_;
	my ($out) = $c->query($sql);
	my $err = $c->{stderr};
	$c->{stderr} = '';
	return ($out, $err);
}

# A message's state, read directly from the server.
sub state_of
{
	my ($db, $id) = @_;
	return $node->safe_psql($db,
		"SELECT recalled_at IS NOT NULL, coalesce(recalled_by, ''), coalesce(body, '')"
		  . " FROM messages WHERE id = $id");
}

my ($out, $err, $offset);

# ---------------------------------------------------------------------------
# 'transaction' (default): the leftover is refused
my $a = client('txdb');
my $b = client('txdb');

# the two clients share one server session
my $pid_a = $a->query_safe('SELECT pg_backend_pid()');
my $pid_b = $b->query_safe('SELECT pg_backend_pid()');
is($pid_a, $pid_b, 'transaction: both clients run on one server connection');

$a->query_safe("SET recall.actor = 'grace'");
is($b->query_safe("SELECT current_setting('recall.actor')"),
	'grace', "transaction: A's session-level SET is visible to B");

# A's own recall, in the next transaction: refused as well
($out, $err) = run($a, "SELECT recall.recall('messages', 1)");
like($err, qr/ERROR:\s+42501: .*from an earlier transaction/,
	"transaction: A's recall with its own leftover SET is refused (42501)");
is(state_of('txdb', 1), 'f||text 1', 'transaction: message 1 not recalled');

# B names no actor: refused, with the HINT, and logged
$offset = -s $node->logfile;
($out, $err) = run($b, "SELECT recall.recall('messages', 2)");
like($err, qr/ERROR:\s+42501: permission denied to recall a message of table "messages" with setting "recall.actor" from an earlier transaction/,
	"transaction: B's recall without an actor is refused (42501)");
like($err, qr/HINT:\s+Use SET LOCAL recall.actor/, 'transaction: the HINT names SET LOCAL');
is(state_of('txdb', 2), 'f||text 2', 'transaction: message 2 not recalled');
is($node->safe_psql('txdb', 'SELECT count(*) FROM recall.events'),
	'0', 'transaction: no event written');
ok( $node->wait_for_log(
		qr/LOG:\s+pg_recall: refused recall on table "messages" by actor "grace" \(role "app"\): permission denied to recall a message of table "messages" with setting "recall.actor" from an earlier transaction/,
		$offset),
	'transaction: the refusal is in the server log');

# the UPDATE form is refused the same way
($out, $err) = run($b, "UPDATE messages SET recalled_at = now() WHERE id = 3");
like($err, qr/ERROR:\s+42501: /, 'transaction: B\'s UPDATE without an actor is refused');
is(state_of('txdb', 3), 'f||text 3', 'transaction: message 3 not recalled');

# the transaction form works through pgbouncer
($out, $err) = run($b,
	"BEGIN; SET LOCAL recall.actor = 'grace'; SELECT recall.recall('messages', 4); COMMIT;");
is($err, '', 'transaction: SET LOCAL + recall: no error');
is($out, 't', 'transaction: SET LOCAL + recall: recalled');
is(state_of('txdb', 4), 't|grace|', 'transaction: message 4 recalled by grace');

($out, $err) = run($b,
	"BEGIN; SELECT set_config('recall.actor', 'grace', true) IS NOT NULL; "
	  . "UPDATE messages SET recalled_at = now() WHERE id = 5; COMMIT;");
is($err, '', 'transaction: set_config(..., true) + UPDATE: no error');
is(state_of('txdb', 5), 't|grace|', 'transaction: message 5 recalled by grace');

# a SET LOCAL leaves nothing for the next client: A's session value is back
# (still a leftover, still refused)
($out, $err) = run($a, "SELECT recall.recall('messages', 6)");
like($err, qr/ERROR:\s+42501: /, 'transaction: after B\'s SET LOCAL, the leftover is still refused');
is(state_of('txdb', 6), 'f||text 6', 'transaction: message 6 not recalled');

# the statement's own actor needs no setting at all
($out, $err) = run($b, "SELECT recall.recall('messages', 7, 'grace')");
is($out, 't', 'transaction: the actor argument works beside a leftover setting');

$a->quit;
$b->quit;

# ---------------------------------------------------------------------------
# 'session': the leak, as 1.0 had it
$a = client('sessdb');
$b = client('sessdb');
is($a->query_safe('SELECT pg_backend_pid()'),
	$b->query_safe('SELECT pg_backend_pid()'),
	'session: both clients run on one server connection');
is($b->query_safe('SHOW recall.actor_scope'), 'session', 'session: scope set per database');

$a->query_safe("SET recall.actor = 'grace'");
is($a->query_safe("SELECT recall.recall('messages', 1)"), 't', 'session: A recalls as grace');
($out, $err) = run($b, "SELECT recall.recall('messages', 2)");
is($err, '', "session: B's recall without an actor is accepted");
is(state_of('sessdb', 2), 't|grace|',
	"session: B's recall is recorded as grace (the leak 'transaction' prevents)");

# the transaction form works here too
($out, $err) = run($b,
	"BEGIN; SET LOCAL recall.actor = 'grace'; SELECT recall.recall('messages', 3); COMMIT;");
is($out, 't', 'session: SET LOCAL + recall works');

$a->quit;
$b->quit;

done_testing();
