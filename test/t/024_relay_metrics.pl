# Copyright (c) pg_recall authors
#
# 024_relay_metrics.pl
#	  pg_recall_relay --http: GET /metrics in the Prometheus text format.
#	  The body is parsed (test/t/PromText.pm), not grepped: every metric
#	  has one HELP and one TYPE line before its samples, every name starts
#	  with pg_recall_relay_, counters end in _total.  It answers 401
#	  without the --token-file token and 200 with it.  After N recalls the
#	  events counter is N (for the JSON lines, and for each SSE client);
#	  the SSE client gauge follows clients that connect and go away; the
#	  reconnect counter counts a pg_terminate_backend() of the relay's
#	  session; and a relay restarted behind, its output blocked (a pipe
#	  nobody reads), shows its lag (the events after its position, and the
#	  age of the oldest, growing), which goes to 0 once it has caught up.

use strict;
use warnings;

use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PromText qw(parse_metrics sample);
use RelayNode qw(relay_node);
use Test::More;
use Time::HiRes qw(time usleep);

my $WAIT = 30;

my $node = relay_node('relay_metrics', rows => 5000);

my $dir   = PostgreSQL::Test::Utils::tempdir;
my $out   = "$dir/relay.out";
my $err   = "$dir/relay.err";
my $state = "$dir/relay.state";
my $conn  = $node->connstr('postgres');
my $port  = PostgreSQL::Test::Cluster::get_free_port();
my $token = 'metrics-token';
PostgreSQL::Test::Utils::append_to_file("$dir/token", "$token\n");

my $http = HTTP::Tiny->new(timeout => 10);
my $relay;

# a test that dies leaves no relay behind
END { kill 'KILL', $relay if $relay && waitpid($relay, POSIX::WNOHANG()) == 0; }

# ---------------------------------------------------------------------------
# helpers

# Start the relay; its JSON lines go to $stdout (a file name, or a handle
# to dup).
sub start_relay
{
	my ($stdout) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		delete $ENV{PGAPPNAME};
		open(STDIN, '<', '/dev/null') or POSIX::_exit(126);
		if (ref $stdout)
		{
			open(STDOUT, '>&', $stdout) or POSIX::_exit(126);
		}
		else
		{
			open(STDOUT, '>>', $stdout) or POSIX::_exit(126);
		}
		open(STDERR, '>>', $err) or POSIX::_exit(126);
		exec('pg_recall_relay', '-d', $conn, '--state', $state,
			'--http', "127.0.0.1:$port", '--token-file', "$dir/token",
			'--heartbeat', '1')
		  or POSIX::_exit(127);
	}
	return $pid;
}

sub stop_relay
{
	my ($pid) = @_;
	kill 'TERM', $pid;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return $? if waitpid($pid, POSIX::WNOHANG()) == $pid;
		usleep(50_000);
	}
	return undef;
}

# GET /metrics: (status, body, headers).
sub get_metrics
{
	my (%headers) = @_;
	my $r = $http->get("http://127.0.0.1:$port/metrics", { headers => \%headers });
	return ($r->{status}, $r->{content}, $r->{headers});
}

# GET /metrics with the token, parsed.
sub scrape
{
	my ($st, $body) = get_metrics(Authorization => "Bearer $token");
	return undef unless $st == 200;
	return parse_metrics($body);
}

# Scrape until $cond->($parsed) holds; the last scrape either way.
sub wait_metrics
{
	my ($what, $cond) = @_;
	my $deadline = time + $WAIT;
	my $p;
	while (time < $deadline)
	{
		$p = scrape();
		return $p if $p && $cond->($p);
		usleep(100_000);
	}
	diag "timed out waiting for $what";
	return $p;
}

# One sample's value from a scrape.
sub v
{
	my ($p, $name, $labels) = @_;
	return $p ? sample($p, $name, $labels) : undef;
}

sub relayed { v($_[0], 'pg_recall_relay_events_relayed_total', qq{output="$_[1]"}) }

# An SSE client: GET /events over HTTP/1.0 on a plain socket; it reads
# whatever arrives, so the relay is never held up by it.
sub sse_open
{
	my $sock = IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $port,
		Proto    => 'tcp') or die "connect: $!";
	my $req = "GET /events HTTP/1.0\r\nAuthorization: Bearer $token\r\n\r\n";
	syswrite($sock, $req) == length($req) or die "write: $!";
	return { sock => $sock, raw => '' };
}

# Read what the client has received; the number of recall events in it.
sub sse_events
{
	my ($c) = @_;
	my $sel = IO::Select->new($c->{sock});
	while ($sel->can_read(0.05))
	{
		my $n = sysread($c->{sock}, my $buf, 65536);
		last unless $n;
		$c->{raw} .= $buf;
	}
	my @events = $c->{raw} =~ /^event: recall$/mg;
	return scalar @events;
}

sub admin_recall
{
	my ($where) = @_;
	$node->safe_psql('postgres',
		"UPDATE messages SET recalled_at = now(), recall_reason = 'test' WHERE $where");
}

# ---------------------------------------------------------------------------
# the endpoint, its authentication and its format

my $t0    = time;
$relay = start_relay($out);
my $p     = wait_metrics('the relay to connect',
	sub { (v($_[0], 'pg_recall_relay_up') // 0) == 1 });
is(v($p, 'pg_recall_relay_up'), 1, 'pg_recall_relay_up is 1 once connected');

my ($st, $body, $hdr) = get_metrics();
is($st, 401, '/metrics without the token: 401');
like($hdr->{'www-authenticate'} // '', qr/^Bearer/, '... naming the Bearer scheme');
unlike($body, qr/pg_recall_relay_/, '... and no metric');
($st) = get_metrics(Authorization => 'Bearer wrong');
is($st, 401, '/metrics with a wrong token: 401');
my $r = $http->get("http://127.0.0.1:$port/metrics?token=$token");
is($r->{status}, 200, '/metrics with ?token=: 200');
($st, $body, $hdr) = get_metrics(Authorization => "Bearer $token");
is($st, 200, '/metrics with the token: 200');
is($hdr->{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
	'content type of the text format 0.0.4');

$p = parse_metrics($body);
is_deeply($p->{errors}, [], 'the body parses as the text format, line by line');
my %types = (
	pg_recall_relay_info                      => 'gauge',
	pg_recall_relay_start_time_seconds        => 'gauge',
	pg_recall_relay_up                        => 'gauge',
	pg_recall_relay_db_reconnects_total       => 'counter',
	pg_recall_relay_events_relayed_total      => 'counter',
	pg_recall_relay_sse_clients               => 'gauge',
	pg_recall_relay_sse_clients_dropped_total => 'counter',
	pg_recall_relay_lag_events                => 'gauge',
	pg_recall_relay_lag_seconds               => 'gauge');
is_deeply({ map {; $_ => $p->{metrics}{$_}{type} } @{ $p->{order} } },
	\%types, 'the metrics and their types');
my @bad = grep {
	my $m = $p->{metrics}{$_};
	!defined $m->{help} || $m->{help} eq '' || !%{ $m->{samples} }
	  || (($m->{type} eq 'counter') xor /_total$/)
} @{ $p->{order} };
is_deeply(\@bad, [], 'each has HELP text and samples; counters, and only they, end in _total');
is_deeply([ sort keys %{ $p->{metrics}{pg_recall_relay_events_relayed_total}{samples} } ],
	[ 'output="sse"', 'output="stdout"' ], 'events relayed: one sample per output');
is(v($p, 'pg_recall_relay_info', 'version="1.0"'), 1, 'info carries the version');
my $started = v($p, 'pg_recall_relay_start_time_seconds');
ok($started >= $t0 - 5 && $started <= time + 5, 'start time: when the relay started');
is(relayed($p, 'stdout'), 0, 'no event relayed yet');
is(v($p, 'pg_recall_relay_db_reconnects_total'), 0, 'no reconnect yet');
is(v($p, 'pg_recall_relay_sse_clients'), 0, 'no SSE client yet');
is(v($p, 'pg_recall_relay_sse_clients_dropped_total'), 0, 'no SSE client dropped');
is(v($p, 'pg_recall_relay_lag_events'), 0, 'caught up: lag 0 events');
cmp_ok(v($p, 'pg_recall_relay_lag_seconds'), '==', 0, 'caught up: lag 0 seconds');

# ---------------------------------------------------------------------------
# SSE clients and events relayed

my $c1 = sse_open();
$p = wait_metrics('one SSE client', sub { v($_[0], 'pg_recall_relay_sse_clients') == 1 });
is(v($p, 'pg_recall_relay_sse_clients'), 1, 'SSE clients: 1 after one connects');
my $c2 = sse_open();
$p = wait_metrics('two SSE clients', sub { v($_[0], 'pg_recall_relay_sse_clients') == 2 });
is(v($p, 'pg_recall_relay_sse_clients'), 2, 'SSE clients: 2 after another connects');

# 7 recalls, each its own transaction, by both ways of recalling
for my $id (1 .. 4)
{
	$node->safe_psql('postgres',
		"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', $id); COMMIT");
}
admin_recall("id = $_") for 5 .. 7;
$p = wait_metrics('7 events relayed',
	sub { relayed($_[0], 'stdout') == 7 && relayed($_[0], 'sse') == 14 });
is(relayed($p, 'stdout'), 7, 'after 7 recalls: 7 JSON lines counted');
is(scalar(() = PostgreSQL::Test::Utils::slurp_file($out) =~ /\n/g), 7,
	'... as many as the relay wrote');
is(relayed($p, 'sse'), 14, '... and 7 SSE messages for each of the 2 clients');
my $deadline = time + $WAIT;
usleep(50_000) while (sse_events($c1) < 7 || sse_events($c2) < 7) && time < $deadline;
is(sse_events($c1) + sse_events($c2), 14, '... which the clients received');
$p = wait_metrics('lag 0', sub { v($_[0], 'pg_recall_relay_lag_events') == 0 });
is(v($p, 'pg_recall_relay_lag_events'), 0, 'caught up after the recalls: lag 0 events');
cmp_ok(v($p, 'pg_recall_relay_lag_seconds'), '==', 0, '... and 0 seconds');

close $c1->{sock};
$p = wait_metrics('one SSE client gone', sub { v($_[0], 'pg_recall_relay_sse_clients') == 1 });
is(v($p, 'pg_recall_relay_sse_clients'), 1, 'SSE clients: 1 after one went away');
close $c2->{sock};
$p = wait_metrics('both SSE clients gone', sub { v($_[0], 'pg_recall_relay_sse_clients') == 0 });
is(v($p, 'pg_recall_relay_sse_clients'), 0, 'SSE clients: 0 after both went away');
is(v($p, 'pg_recall_relay_sse_clients_dropped_total'), 0, '... neither counted as dropped');

# ---------------------------------------------------------------------------
# reconnects

my $killed = $node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
	   FROM (SELECT pid FROM pg_stat_activity
	          WHERE application_name = 'pg_recall_relay' OFFSET 0) s");
is($killed, 1, "terminated the relay's backend");
$p = wait_metrics('a reconnect',
	sub { v($_[0], 'pg_recall_relay_db_reconnects_total') == 1 && v($_[0], 'pg_recall_relay_up') == 1 });
is(v($p, 'pg_recall_relay_db_reconnects_total'), 1, 'reconnect counter: 1');
is(v($p, 'pg_recall_relay_up'), 1, 'up again');
admin_recall('id = 8');
$p = wait_metrics('the 8th event', sub { relayed($_[0], 'stdout') == 8 });
is(relayed($p, 'stdout'), 8, 'relays after the reconnect: 8 events counted');

is(stop_relay($relay), 0, 'relay stopped (state saved)');

# ---------------------------------------------------------------------------
# lag: a relay restarted behind its position, its output blocked

admin_recall('id BETWEEN 1001 AND 4000');    # 3000 events, one transaction
pipe(my $rd, my $wr) or die "pipe: $!";
# the smallest pipe (Linux): the first batch of 1000 lines cannot fit
eval { fcntl($wr, 1031, 4096) };              # F_SETPIPE_SZ
$relay = start_relay($wr);
close $wr;

$p = wait_metrics('the lag of the blocked relay',
	sub { v($_[0], 'pg_recall_relay_lag_events') > 0 });
is(v($p, 'pg_recall_relay_lag_events'), 3000,
	'blocked behind: lag in events = the 3000 events after its position');
my $lag1 = v($p, 'pg_recall_relay_lag_seconds');
cmp_ok($lag1, '>', 0, 'blocked behind: lag in seconds > 0');
is(v($p, 'pg_recall_relay_up'), 1, '... while connected');
is(relayed($p, 'stdout'), 0, '... with nothing written yet');
usleep(1_100_000);
$p = scrape();
is(v($p, 'pg_recall_relay_lag_events'), 3000, 'still blocked: same lag in events');
cmp_ok(v($p, 'pg_recall_relay_lag_seconds'), '>', $lag1,
	'... and the age of the oldest event not relayed grows');

# read the pipe: the relay goes on and catches up
my $lines = '';
my $sel = IO::Select->new($rd);
$deadline = time + $WAIT;
while (($lines =~ tr/\n//) < 3000 && time < $deadline)
{
	next unless $sel->can_read(0.1);
	my $n = sysread($rd, my $buf, 65536);
	last unless $n;
	$lines .= $buf;
}
is($lines =~ tr/\n//, 3000, 'the relay wrote the 3000 events once unblocked');
$p = wait_metrics('lag 0 after catching up',
	sub { v($_[0], 'pg_recall_relay_lag_events') == 0 });
is(v($p, 'pg_recall_relay_lag_events'), 0, 'caught up: lag 0 events');
cmp_ok(v($p, 'pg_recall_relay_lag_seconds'), '==', 0, 'caught up: lag 0 seconds');
is(relayed($p, 'stdout'), 3000, 'events relayed: 3000');

is(stop_relay($relay), 0, 'relay stopped');
undef $relay;
close $rd;

$node->stop;
done_testing();
