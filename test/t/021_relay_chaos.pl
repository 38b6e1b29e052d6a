# Copyright (c) pg_recall authors
#
# 021_relay_chaos.pl
#	  pg_recall_relay under chaos, bounded in time (about 20 s of load):
#	  4 pgbench writers insert fresh messages and recall them (single
#	  recalls and bulk ones), while the server is restarted in immediate
#	  mode twice (a crash: every connection dies, recovery runs) and the
#	  relay is killed with SIGKILL twice and restarted on its state file.
#	  Afterwards the set of events the relay printed equals recall.events:
#	  at-least-once delivery, nothing lost.
#
#	  The server runs without shared_preload_libraries here, so the
#	  notification is sent inside each recall transaction (010 and 020
#	  cover the dispatcher's); the relay treats it as a wake-up only.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Seconds of load, and the bound of the final catch-up.
my $LOAD = 20;
my $WAIT = 30;

my $node = PostgreSQL::Test::Cluster->new('chaos');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
max_connections = 40
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_recall;
CREATE SEQUENCE mid;
CREATE TABLE messages (id bigint PRIMARY KEY, conversation bigint,
                       sender text, sent_at timestamptz DEFAULT now(), body text);
SELECT recall.enable('messages', '{body}', sender => 'sender',
                     sent_at => 'sent_at', conversation => 'conversation');
});

my $dir   = PostgreSQL::Test::Utils::tempdir;
my $out   = "$dir/relay.out";
my $err   = "$dir/relay.err";
my $state = "$dir/relay.state";
my $conn  = $node->connstr('postgres');

# A writer's transactions: a message recalled by its sender (single), or
# three messages recalled in one statement by an admin (bulk).
PostgreSQL::Test::Utils::append_to_file(
	"$dir/single.sql", q{
\set conv random(1, 20)
INSERT INTO messages (id, conversation, sender, body)
  VALUES (nextval('mid'), :conv, 'w' || :client_id, 'secret');
SELECT recall.recall('messages', currval('mid'), 'w' || :client_id);
});
PostgreSQL::Test::Utils::append_to_file(
	"$dir/bulk.sql", q{
\set conv random(1, 20)
INSERT INTO messages (id, conversation, sender, body)
  SELECT nextval('mid'), :conv, 'b' || :client_id, 'secret' FROM generate_series(1, 3);
UPDATE messages SET recalled_at = now(), recall_reason = 'chaos'
  WHERE sender = 'b' || :client_id AND recalled_at IS NULL;
});

# ---------------------------------------------------------------------------
# helpers

sub start_relay
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		delete $ENV{PGAPPNAME};
		open(STDIN,  '<',  '/dev/null') or POSIX::_exit(126);
		open(STDOUT, '>>', $out) or POSIX::_exit(126);
		open(STDERR, '>>', $err) or POSIX::_exit(126);
		exec('pg_recall_relay', '-d', $conn, '--state', $state,
			'--from', 'oldest')
		  or POSIX::_exit(127);
	}
	return $pid;
}

sub wait_exit
{
	my ($pid, $secs) = @_;
	my $deadline = time + ($secs // $WAIT);
	while (time < $deadline)
	{
		return $? if waitpid($pid, POSIX::WNOHANG()) == $pid;
		usleep(50_000);
	}
	return undef;
}

# pgbench for the rest of the load period (it stops when the server dies).
my ($pgb_out, $pgb_err) = ('', '');
my $load_end;

sub start_writers
{
	my $secs = int($load_end - time);
	return undef if $secs < 1;
	return IPC::Run::start(
		[
			'pgbench', '-n', '-c', '4', '-j', '4', '-T', $secs,
			'-f', "$dir/single.sql\@3", '-f', "$dir/bulk.sql\@1",
			'-d', $conn
		],
		'<', \undef, '>>', \$pgb_out, '2>>', \$pgb_err,
		IPC::Run::timeout($LOAD + 60));
}

sub stop_writers
{
	my ($h) = @_;
	return unless $h;
	eval { $h->finish; };
	if ($@) { eval { $h->kill_kill; }; }
}

# Sleep until $t seconds after the start of the load.
my $t0;
sub at
{
	my ($t) = @_;
	my $d = $t0 + $t - time;
	usleep($d * 1_000_000) if $d > 0;
}

sub seqs_printed
{
	my %seen;
	my $bad = 0;
	for my $line (split /\n/, PostgreSQL::Test::Utils::slurp_file($out))
	{
		next if $line eq '';
		my $ev = eval { decode_json($line) };
		if (ref $ev eq 'HASH') { $seen{ $ev->{seq} } = 1; }
		else                   { $bad++; }
	}
	return ([ sort { $a <=> $b } keys %seen ], $bad);
}

sub seqs_logged
{
	return [
		split /,/,
		$node->safe_psql('postgres',
			"SELECT string_agg(seq::text, ',' ORDER BY seq) FROM recall.events")
	];
}

# ---------------------------------------------------------------------------
# chaos

$t0       = time;
$load_end = $t0 + $LOAD;
my $relay   = start_relay();
my $writers = start_writers();

at(3);
kill 'KILL', $relay;
wait_exit($relay);
note 'relay killed (1)';
$relay = start_relay();

at(7);
$node->stop('immediate');
stop_writers($writers);
note 'server crashed (1)';
$node->start;
$writers = start_writers();

at(11);
kill 'KILL', $relay;
wait_exit($relay);
note 'relay killed (2)';
usleep(700_000);    # recalls go on while no relay runs
$relay = start_relay();

at(15);
$node->stop('immediate');
stop_writers($writers);
note 'server crashed (2)';
$node->start;
$writers = start_writers();

stop_writers($writers);
note "load done after " . sprintf('%.1f', time - $t0) . " s";

# ---------------------------------------------------------------------------
# the relay catches up: the set of events printed equals recall.events

my $logged = seqs_logged();
cmp_ok(scalar @$logged, '>', 200, 'the writers recalled a good number of messages')
  or diag "pgbench: $pgb_err";

my ($printed, $bad);
my $deadline = time + $WAIT;
while (time < $deadline)
{
	($printed, $bad) = seqs_printed();
	last if join(',', @$printed) eq join(',', @$logged);
	usleep(200_000);
}
is(scalar @$printed, scalar @$logged, 'as many distinct events printed as logged');
is(join(',', @$printed), join(',', @$logged),
	'the set of events printed equals recall.events');
note scalar(@$logged) . " events, $bad partial line(s) left by SIGKILL";

my $relay_log = PostgreSQL::Test::Utils::slurp_file($err);
my $reconnects = () = $relay_log =~ /reconnected to the database/g;
cmp_ok($reconnects, '>=', 1, 'the relay reconnected after a crash');
unlike($relay_log, qr/error:/, 'no error in the relay\'s log');

kill 'TERM', $relay;
is(wait_exit($relay), 0, 'relay stopped with SIGTERM: exit 0');
like(PostgreSQL::Test::Utils::slurp_file($state), qr/^\S+\n\z/,
	'state file holds a cursor');

$node->stop;
done_testing();
