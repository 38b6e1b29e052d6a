# Copyright (c) pg_recall authors
#
# 020_relay.pl
#	  pg_recall_relay, the listener program: the JSON lines it prints for
#	  single and bulk recalls; at-least-once delivery across a kill -9 of
#	  the relay (restarted on the same state file, every event comes, none
#	  is lost); a server restart and pg_terminate_backend of the relay's
#	  connection while recalls go on (it reconnects, catches up, loses
#	  nothing); a server that is down when the relay starts (waited for);
#	  SIGTERM (state saved, exit 0); SIGHUP (output reopened); a hot
#	  standby (no LISTEN there: the relay polls, and prints what the
#	  standby has replayed); and bad
#	  input (malformed conninfo, unreadable state file, garbage cursor in
#	  the state file, invalid channel, HTTP port in use, bad options): a
#	  clear message and exit status 1, never a hang or a crash.

use strict;
use warnings;

use File::Copy;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RelayNode qw(relay_node);
use Test::More;
use Time::HiRes qw(time usleep);

# Bound of every wait, in seconds.
my $WAIT = 30;

my $node = relay_node('relay', rows => 2000,
	init => { allows_streaming => 1 }, conf => "log_min_messages = log\n");

my $dir    = PostgreSQL::Test::Utils::tempdir;
my $out    = "$dir/relay.out";
my $err    = "$dir/relay.err";
my $state  = "$dir/relay.state";
my $conn   = $node->connstr('postgres');

# ---------------------------------------------------------------------------
# helpers

# Start the relay in the background, stdout and stderr appended to files.
sub start_relay
{
	my (%o) = @_;
	my @args = ('-d', $o{conninfo} // $conn, @{ $o{args} // [] });
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# the relay's own application_name, not the test's (PGAPPNAME)
		delete $ENV{PGAPPNAME};
		open(STDIN,  '<',  '/dev/null') or POSIX::_exit(126);
		open(STDOUT, '>>', $o{out} // $out) or POSIX::_exit(126);
		open(STDERR, '>>', $o{err} // $err) or POSIX::_exit(126);
		exec('pg_recall_relay', @args) or POSIX::_exit(127);
	}
	return $pid;
}

# Wait for a process to exit; its exit status, or undef after $secs.
sub wait_exit
{
	my ($pid, $secs) = @_;
	my $deadline = time + ($secs // $WAIT);
	while (time < $deadline)
	{
		my $r = waitpid($pid, POSIX::WNOHANG());
		return $? if $r == $pid;
		usleep(50_000);
	}
	return undef;
}

sub slurp
{
	my ($file) = @_;
	return '' unless -e $file;
	return PostgreSQL::Test::Utils::slurp_file($file);
}

# The relay's output: the decoded events, in order, and the bad lines.
sub events_printed
{
	my ($file) = @_;
	my (@events, @bad);
	for my $line (split /\n/, slurp($file // $out))
	{
		next if $line eq '';
		my $ev = eval { decode_json($line) };
		if (ref $ev eq 'HASH') { push @events, $ev; }
		else                   { push @bad,    $line; }
	}
	return (\@events, \@bad);
}

# The distinct seqs printed, sorted.
sub seqs_printed
{
	my ($events) = events_printed(@_);
	my %seen = map { $_->{seq} => 1 } @$events;
	return [ sort { $a <=> $b } keys %seen ];
}

# The seqs of recall.events, sorted.
sub seqs_logged
{
	my $s = $node->safe_psql('postgres',
		'SELECT string_agg(seq::text, \',\' ORDER BY seq) FROM recall.events');
	return [ split /,/, $s ];
}

# Wait until the relay has printed every event of the log.
sub wait_all_printed
{
	my ($file) = @_;
	my $deadline = time + $WAIT;
	my ($got, $want);
	while (time < $deadline)
	{
		$got  = join(',', @{ seqs_printed($file) });
		$want = join(',', @{ seqs_logged() });
		return 1 if $got eq $want;
		usleep(100_000);
	}
	diag "relay printed seqs: $got\nrecall.events seqs: $want";
	return 0;
}

# Wait until a file contains a pattern.
sub wait_for_log
{
	my ($file, $re) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return 1 if slurp($file) =~ $re;
		usleep(50_000);
	}
	diag "timed out waiting for $re in $file:\n" . slurp($file);
	return 0;
}

# Recall messages by id as the superuser (admin power, with a reason).
sub admin_recall
{
	my ($where) = @_;
	$node->safe_psql('postgres',
		"UPDATE messages SET recalled_at = now(), recall_reason = 'test' WHERE $where");
}

# Run the relay to completion with a time limit: (exit status, stderr).
sub run_relay_fails
{
	my (@args) = @_;
	my ($stdout, $stderr) = ('', '');
	my $h = IPC::Run::start([ 'pg_recall_relay', @args ],
		'<', \undef, '>', \$stdout, '2>', \$stderr,
		IPC::Run::timeout(20));
	eval { $h->finish; };
	if ($@)
	{
		$h->kill_kill;
		return (undef, "timed out: $stderr");
	}
	return ($h->result(0), $stderr);
}

# ---------------------------------------------------------------------------
# JSON lines for a single and a bulk recall

my $relay = start_relay(args => [ '--state', $state ]);
ok(wait_for_log($err, qr/connected to the database/), 'relay connected');
ok(-s $state, 'the start cursor (head) is saved before any event');

$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', 1); COMMIT");
ok(wait_all_printed(), 'single recall printed');

my ($events, $bad) = events_printed();
is(scalar @$events, 1, 'one line for one recall');
is(scalar @$bad,    0, 'no malformed line');
my $line = (split /\n/, slurp($out))[0];
like($line,
	qr/^\{"cursor":"[^"]+","seq":\d+,"op":"recall","table":"public\.messages","pk":\{[^}]*\},"conversation":"1","privileged":false,"at":"[^"]+"\}$/,
	'line format: keys in order, no content, no reason');
my $ev = $events->[0];
my $expect = $node->safe_psql('postgres',
	"SELECT e.cursor || '|' || e.seq || '|' || to_json(e.recalled_at)::text"
	  . " FROM recall.events_after(NULL, 100000) e WHERE e.pk = '{\"id\": 1}'");
is(join('|', $ev->{cursor}, $ev->{seq}, encode_json($ev->{at})),
	$expect, 'cursor, seq and timestamp are those of events_after');
is_deeply($ev->{pk}, { id => 1 }, 'pk');
ok(!exists $ev->{body} && !exists $ev->{reason} && !exists $ev->{actor},
	'neither content, reason nor actor');
like($ev->{at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/,
	'at is an ISO 8601 timestamp');

admin_recall('id IN (2, 3, 4)');
ok(wait_all_printed(), 'bulk recall printed');
($events) = events_printed();
is(scalar @$events, 4, 'one line per message of a bulk recall');
is_deeply([ map { $_->{pk}{id} } @$events[ 1 .. 3 ] ], [ 2, 3, 4 ],
	'bulk events in order');
is_deeply([ map { $_->{privileged} ? 1 : 0 } @$events[ 1 .. 3 ] ], [ 1, 1, 1 ],
	'admin recall is privileged');
is_deeply([ map { $_->{conversation} } @$events[ 1 .. 3 ] ], [ '2', '3', '4' ],
	'conversation of each');

ok(wait_for_log($state, qr/^\Q$events->[-1]{cursor}\E\n\z/),
	'state file holds the last cursor printed');

# ---------------------------------------------------------------------------
# kill -9, recall meanwhile, restart on the same state: nothing lost

kill 'KILL', $relay;
wait_exit($relay);
admin_recall('id IN (5, 6)');
$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', 7); COMMIT");
$relay = start_relay(args => [ '--state', $state ]);
ok(wait_all_printed(), 'after kill -9 and restart: every event printed');
($events, $bad) = events_printed();
is(scalar @$bad, 0, 'no malformed line after kill -9');
my %count;
$count{ $_->{seq} }++ for @$events;
ok(!grep({ $_ > 1 } values %count),
	'no repeat here (the state was saved after each batch)');

# ---------------------------------------------------------------------------
# server restart and pg_terminate_backend while recalls go on

# a session that recalls one message every 20 ms, committing each
my $recaller_sql = q{
DO $$
BEGIN
  FOR i IN 100..399 LOOP
    UPDATE messages SET recalled_at = now(), recall_reason = 'loop' WHERE id = i;
    COMMIT;
    PERFORM pg_sleep(0.02);
  END LOOP;
END $$;
};
my ($rc_out, $rc_err) = ('', '');
my $recaller = IPC::Run::start(
	[ 'psql', '-X', '-d', $conn, '-c', $recaller_sql ],
	'>', \$rc_out, '2>', \$rc_err, IPC::Run::timeout(120));

usleep(500_000);
for my $round (1 .. 2)
{
	# once the relay is connected (again), terminate its backend
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM pg_stat_activity"
			  . " WHERE application_name = 'pg_recall_relay'"),
		"round $round: the relay is connected");
	my $n = $node->safe_psql('postgres',
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
		  . " WHERE application_name = 'pg_recall_relay'");
	is($n, '1', "round $round: terminated the relay's backend");
	usleep(300_000);
}
$recaller->finish;
is($recaller->result(0), 0, 'recalling session done') or diag $rc_err;
ok(wait_all_printed(), 'after pg_terminate_backend: nothing lost');
like(slurp($err), qr/connection to the database lost/,
	'the lost connection is logged');
like(slurp($err), qr/reconnected to the database/, 'the reconnection is logged');

# now the same with a server restart in the middle of the recalls
$recaller_sql =~ s/100\.\.399/400..699/;
$recaller = IPC::Run::start(
	[ 'psql', '-X', '-d', $conn, '-c', $recaller_sql ],
	'>', \$rc_out, '2>', \$rc_err, IPC::Run::timeout(120));
usleep(1_000_000);
$node->restart(fail_ok => 0);
eval { $recaller->finish; };    # the session dies with the server
admin_recall('id BETWEEN 700 AND 720');
ok(wait_all_printed(), 'after a server restart: nothing lost');
my $reconnects = () = slurp($err) =~ /reconnected to the database/g;
cmp_ok($reconnects, '>=', 3, 'reconnected after the restart too');
($events, $bad) = events_printed();
is(scalar @$bad, 0, 'no malformed line');
ok(!grep({ !defined $_->{cursor} || $_->{cursor} eq '' } @$events),
	'every line has a cursor');

# ---------------------------------------------------------------------------
# SIGHUP reopens the output (log rotation), SIGTERM saves and exits 0

move($out, "$out.1") or die "rename: $!";
kill 'HUP', $relay;
ok(wait_for_log($err, qr/reopened the output and log files/), 'SIGHUP logged');
# stdout is not a file the relay opened: it keeps writing to the old one
admin_recall('id = 721');
ok(wait_for_log("$out.1", qr/"pk":\{"id": 721\}/),
	'stdout kept after SIGHUP (only --file and --log-file are reopened)');
move("$out.1", $out) or die "rename: $!";

admin_recall('id = 722');
ok(wait_all_printed(), 'caught up before SIGTERM');
kill 'TERM', $relay;
my $status = wait_exit($relay);
is($status, 0, 'SIGTERM: exit status 0');
like(slurp($err), qr/stopping on SIGTERM; state saved/, 'SIGTERM logged');
($events) = events_printed();
is(slurp($state), $events->[-1]{cursor} . "\n",
	'SIGTERM: the state holds the last cursor printed');

# ---------------------------------------------------------------------------
# --file, and a relay started while the server is down

my $fout = "$dir/file.out";
my $fstate = "$dir/file.state";
$node->stop('fast');
my $ferr = "$dir/file.err";
$relay = start_relay(
	args => [ '--state', $fstate, '--from', 'oldest', '--file', $fout ],
	err  => $ferr);
ok(wait_for_log($ferr, qr/could not connect to the database/),
	'server down at start: waiting');
usleep(500_000);
ok(!defined wait_exit($relay, 0.1), 'still running while the server is down');
$node->start;
ok(wait_for_log($ferr, qr/connected to the database/),
	'connected once the server is up');
ok(wait_all_printed($fout), '--from oldest --file: every retained event');

# SIGHUP with --file: the new file gets the next lines
move($fout, "$fout.1") or die "rename: $!";
kill 'HUP', $relay;
ok(wait_for_log($ferr, qr/reopened the output/), 'SIGHUP with --file');
admin_recall('id = 723');
ok(wait_for_log($fout, qr/"pk":\{"id": 723\}/), 'new output file after SIGHUP');
unlike(slurp("$fout.1"), qr/"id": 723\}/, 'old file no longer written');
kill 'INT', $relay;
is(wait_exit($relay), 0, 'SIGINT: exit status 0');

# ---------------------------------------------------------------------------
# a SIGKILL in the middle of a large batch: no line is lost or garbled

admin_recall('id BETWEEN 800 AND 1999');
my $kstate = "$dir/kill.state";
my $kout = "$dir/kill.out";
my $kerr = "$dir/kill.err";
copy($state, $kstate) or die "copy: $!";
for my $attempt (1 .. 3)
{
	$relay = start_relay(args => [ '--state', $kstate ], out => $kout,
		err => $kerr);
	usleep(30_000 * $attempt);
	kill 'KILL', $relay;
	wait_exit($relay);
}
$relay = start_relay(args => [ '--state', $kstate ], out => $kout, err => $kerr);
my $deadline = time + $WAIT;
my $want = $node->safe_psql('postgres',
	"SELECT string_agg(seq::text, ',' ORDER BY seq) FROM recall.events_after('"
	  . slurp($state) =~ s/\n//r . "', 100000)");
my $got = '';
while (time < $deadline)
{
	$got = join(',', @{ seqs_printed($kout) });
	last if $got eq $want;
	usleep(100_000);
}
is($got, $want, 'killed three times mid-stream: every event after the state printed');
kill 'TERM', $relay;
is(wait_exit($relay), 0, 'stopped');

# ---------------------------------------------------------------------------
# a hot standby: LISTEN is not available there, the relay polls

$node->backup('relay_backup');
my $standby = PostgreSQL::Test::Cluster->new('relay_standby');
$standby->init_from_backup($node, 'relay_backup', has_streaming => 1);
$standby->start;
my $sout = "$dir/standby.out";
my $serr = "$dir/standby.err";
$relay = start_relay(
	conninfo => $standby->connstr('postgres'),
	args     => [ '--from', 'oldest', '--poll-interval', '0.2' ],
	out      => $sout,
	err      => $serr);
ok(wait_for_log($serr, qr/the server is a standby, where LISTEN is not available/),
	'standby: the relay says it polls');
admin_recall('id BETWEEN 50 AND 59');
$node->wait_for_catchup($standby);
my $swant = $standby->safe_psql('postgres',
	"SELECT string_agg(seq::text, ',' ORDER BY seq) FROM recall.events");
$deadline = time + $WAIT;
$got = '';
while (time < $deadline)
{
	$got = join(',', @{ seqs_printed($sout) });
	last if $got eq $swant;
	usleep(100_000);
}
is($got, $swant, 'standby: every event replayed there is printed');
kill 'TERM', $relay;
is(wait_exit($relay), 0, 'standby relay stopped');
$standby->stop;

# ---------------------------------------------------------------------------
# bad input: a clear message and exit status 1

my ($rc, $stderr);

($rc, $stderr) = run_relay_fails('-d', 'host=localhost port');
is($rc, 1, 'malformed conninfo: exit 1');
like($stderr, qr/invalid connection string/, 'malformed conninfo: message');

($rc, $stderr) = run_relay_fails('-d', 'nosuchoption=1');
is($rc, 1, 'unknown conninfo option: exit 1');
like($stderr, qr/invalid connection string.*nosuchoption/,
	'unknown conninfo option: message');

($rc, $stderr) = run_relay_fails('-d', "$conn port=notanumber");
is($rc, 1, 'invalid conninfo value: exit 1');
like($stderr, qr/invalid connection options/, 'invalid conninfo value: message');

my $unreadable = "$dir/unreadable.state";
PostgreSQL::Test::Utils::append_to_file($unreadable, "1:1\n");
chmod 0000, $unreadable;
SKIP:
{
	skip 'running as root: every file is readable', 2 if $> == 0;
	($rc, $stderr) = run_relay_fails('-d', $conn, '--state', $unreadable);
	is($rc, 1, 'unreadable state file: exit 1');
	like($stderr, qr/could not read state file .*Permission denied/,
		'unreadable state file: message');
}

my $dirstate = "$dir/a_directory";
mkdir $dirstate;
($rc, $stderr) = run_relay_fails('-d', $conn, '--state', $dirstate);
is($rc, 1, 'state file that is a directory: exit 1');
like($stderr, qr/could not read state file .*Is a directory/,
	'state file that is a directory: message');

my $garbage = "$dir/garbage.state";
PostgreSQL::Test::Utils::append_to_file($garbage, "not-a-cursor\n");
($rc, $stderr) = run_relay_fails('-d', $conn, '--state', $garbage);
is($rc, 1, 'garbage cursor in the state file: exit 1');
like($stderr, qr/state file ".*garbage\.state" holds an invalid cursor: .*invalid recall event cursor/,
	'garbage cursor: message with the server\'s reason');

my $empty = "$dir/empty.state";
PostgreSQL::Test::Utils::append_to_file($empty, "\n");
($rc, $stderr) = run_relay_fails('-d', $conn, '--state', $empty);
is($rc, 1, 'empty state file: exit 1');
like($stderr, qr/does not hold a cursor/, 'empty state file: message');

($rc, $stderr) = run_relay_fails('-d', $conn, '--channel', 'x' x 64);
is($rc, 1, 'channel name too long: exit 1');
like($stderr, qr/invalid channel name/, 'channel name too long: message');

($rc, $stderr) = run_relay_fails('-d', $conn, '--channel', '');
is($rc, 1, 'empty channel name: exit 1');
like($stderr, qr/invalid channel name/, 'empty channel name: message');

my $busy = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => 0,
	Proto     => 'tcp',
	Listen    => 5) or die "listen: $!";
my $busy_port = $busy->sockport;
($rc, $stderr) = run_relay_fails('-d', $conn, '--http', "127.0.0.1:$busy_port");
is($rc, 1, 'HTTP port in use: exit 1');
like($stderr, qr/could not listen on 127\.0\.0\.1 port $busy_port: Address already in use/,
	'HTTP port in use: message');
close $busy;

($rc, $stderr) = run_relay_fails('-d', $conn, '--http', 'nonsense:port');
is($rc, 1, 'bad --http: exit 1');
like($stderr, qr/invalid port in --http/, 'bad --http: message');

($rc, $stderr) = run_relay_fails('-d', $conn, '--from', 'yesterday');
is($rc, 1, 'bad --from: exit 1');
like($stderr, qr/invalid value "yesterday" for --from.*\n.*Try "pg_recall_relay --help"/,
	'bad --from: message and hint');

($rc, $stderr) = run_relay_fails('--no-such-option');
is($rc, 1, 'unknown option: exit 1');

($rc, $stderr) = run_relay_fails('-d', $conn, '--token-file', "$dir/none");
is($rc, 1, '--token-file without --http: exit 1');

($rc, $stderr) = run_relay_fails('-d', $conn, '--http', '0', '--token-file', "$dir/none");
is($rc, 1, 'missing token file: exit 1');
like($stderr, qr/could not read token file/, 'missing token file: message');

# --help and -V
my ($help_out, $help_err) = ('', '');
IPC::Run::run([ 'pg_recall_relay', '--help' ], '>', \$help_out, '2>', \$help_err);
like($help_out, qr/Usage:.*--state=FILE.*--http=.*SIGTERM/s, '--help');
my $version = '';
IPC::Run::run([ 'pg_recall_relay', '-V' ], '>', \$version);
like($version, qr/^pg_recall_relay \(pg_recall\) \d+\.\d+/, '-V');

# the relay never crashed: no core, and the server is fine
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still up');

$node->stop;
done_testing();
