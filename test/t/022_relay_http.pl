# Copyright (c) pg_recall authors
#
# 022_relay_http.pl
#	  pg_recall_relay --http: Server-Sent Events at GET /events.  Events
#	  arrive for the subscribed conversations and not for others, each with
#	  "id:" its cursor, "event: recall" and "data:" the relay's JSON line;
#	  a heartbeat comment comes when idle; a client that resumes with
#	  Last-Event-ID (or ?after=) gets exactly what it missed, from the
#	  relay's ring or replayed from recall.events_after() after a restart
#	  of the relay; ?from=oldest replays the retained log; a garbage
#	  cursor gets a 400; with --token-file every request without the token
#	  gets a 401; GET /healthz reports the database connection (503 while
#	  the server is down); a client that stops reading is disconnected once
#	  it falls --sse-buffer events behind, without delaying another client,
#	  is counted in /healthz and /metrics, and resumes by cursor.  The SSE client here speaks HTTP/1.0 over a
#	  plain socket, so the test needs no HTTP tool.

use strict;
use warnings;

use HTTP::Tiny;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use PromText qw(parse_metrics sample);
use RelayNode qw(relay_node);
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Test::More;
use Time::HiRes qw(time usleep);

my $WAIT = 30;

my $node = relay_node('relay_http', rows => 20000);

my $dir   = PostgreSQL::Test::Utils::tempdir;
my $out   = "$dir/relay.out";
my $err   = "$dir/relay.err";
my $state = "$dir/relay.state";
my $conn  = $node->connstr('postgres');
my $port  = PostgreSQL::Test::Cluster::get_free_port();
my $token = 's3cret-token';
PostgreSQL::Test::Utils::append_to_file("$dir/token", "$token\n");

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
			'--http', "127.0.0.1:$port", '--token-file', "$dir/token",
			'--heartbeat', '1', '--sse-buffer', '2000')
		  or POSIX::_exit(127);
	}
	return $pid;
}

sub wait_exit
{
	my ($pid) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return $? if waitpid($pid, POSIX::WNOHANG()) == $pid;
		usleep(50_000);
	}
	return undef;
}

sub slurp
{
	my ($f) = @_;
	return -e $f ? PostgreSQL::Test::Utils::slurp_file($f) : '';
}

my $http = HTTP::Tiny->new(timeout => 10);

# A plain GET: (status, body, headers).
sub get
{
	my ($path, %headers) = @_;
	my $r = $http->get("http://127.0.0.1:$port$path", { headers => \%headers });
	return ($r->{status}, $r->{content}, $r->{headers});
}

# The relay's stdout lines, in order: [ [ raw line, decoded ], ... ].
sub lines_printed
{
	return [ map { [ $_, decode_json($_) ] } grep { $_ ne '' } split /\n/, slurp($out) ];
}

sub wait_lines
{
	my ($n) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return 1 if @{ lines_printed() } >= $n;
		usleep(50_000);
	}
	diag "relay printed " . scalar(@{ lines_printed() }) . " lines, expected $n";
	return 0;
}

sub admin_recall
{
	my ($where) = @_;
	$node->safe_psql('postgres',
		"UPDATE messages SET recalled_at = now(), recall_reason = 'test' WHERE $where");
}

# An SSE client: GET over HTTP/1.0, so the body is the raw stream.
sub sse_open
{
	my ($path, %o) = @_;
	my $sock;
	if ($o{rcvbuf})
	{
		# a client that will not read: tiny receive buffer, set before connect
		socket($sock, Socket::PF_INET, Socket::SOCK_STREAM, 0) or die "socket: $!";
		setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}) or die "setsockopt: $!";
		connect($sock, Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1')))
		  or die "connect: $!";
		bless $sock, 'IO::Handle';
	}
	else
	{
		$sock = IO::Socket::INET->new(
			PeerAddr => '127.0.0.1',
			PeerPort => $port,
			Proto    => 'tcp') or die "connect: $!";
	}
	binmode $sock;
	my $req = "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n";
	$req .= "Authorization: Bearer $token\r\n" unless $o{no_auth} || $path =~ /token=/;
	$req .= "Last-Event-ID: $o{last_id}\r\n" if defined $o{last_id};
	$req .= "\r\n";
	syswrite($sock, $req) == length($req) or die "write: $!";
	return {
		sock     => $sock,
		raw      => '',
		status   => undef,
		events   => [],
		comments => [],
		eof      => 0
	};
}

# Read what is there (waiting at most $secs), parse whole messages.
sub sse_pump
{
	my ($c, $secs) = @_;
	my $sel = IO::Select->new($c->{sock});
	my $deadline = time + ($secs // 0);
	do
	{
		while (!$c->{eof} && $sel->can_read(0.05))
		{
			my $n = sysread($c->{sock}, my $buf, 65536);
			if (!$n) { $c->{eof} = 1; last; }
			$c->{raw} .= $buf;
		}
	} while (!$c->{eof} && time < $deadline);

	if (!defined $c->{status} && $c->{raw} =~ s/^HTTP\/1\.[01] (\d+)[^\n]*\n(.*?)\r?\n\r?\n//s)
	{
		$c->{status} = $1;
	}
	return $c unless defined $c->{status};
	while ($c->{raw} =~ s/^(.*?)\n\n//s)
	{
		my %m;
		for my $line (split /\n/, $1)
		{
			if ($line =~ /^:\s?(.*)$/) { push @{ $c->{comments} }, $1; next; }
			my ($k, $v) = $line =~ /^([^:]+):\s?(.*)$/ or next;
			$m{$k} = $v;
		}
		push @{ $c->{events} }, \%m if exists $m{data};
	}
	return $c;
}

# Pump until the client has $n events (or $secs passed).
sub sse_wait
{
	my ($c, $n, $secs) = @_;
	my $deadline = time + ($secs // $WAIT);
	while (time < $deadline)
	{
		sse_pump($c, 0.05);
		return 1 if @{ $c->{events} } >= $n;
		last if $c->{eof};
	}
	diag "SSE client has " . scalar(@{ $c->{events} }) . " events, expected $n"
	  . ($c->{eof} ? ' (connection closed)' : '');
	return 0;
}

# Wait until the stream started (status and the first comment).
sub sse_started
{
	my ($c) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		sse_pump($c, 0.05);
		return 1 if defined $c->{status} && @{ $c->{comments} };
		return 0 if $c->{eof};
	}
	return 0;
}

sub sse_close
{
	my ($c) = @_;
	close $c->{sock};
}

# The pk ids of a client's events, in order.
sub ids
{
	my ($c) = @_;
	return [ map { decode_json($_->{data})->{pk}{id} } @{ $c->{events} } ];
}

# The relay's stdout lines after the one with this cursor, filtered.
sub printed_after
{
	my ($cursor, @conversations) = @_;
	my %want = map { $_ => 1 } @conversations;
	my @lines = @{ lines_printed() };
	my $i = 0;
	if (defined $cursor)
	{
		$i++ while $i < @lines && $lines[$i][1]{cursor} ne $cursor;
		$i++;
	}
	return [ map { $_->[1]{pk}{id} }
		  grep { !@conversations || $want{ $_->[1]{conversation} // '' } }
		  @lines[ $i .. $#lines ] ];
}

# ---------------------------------------------------------------------------
# health and authentication

my $relay = start_relay();
my $deadline = time + $WAIT;
my ($st, $body, $hdr);
while (time < $deadline)
{
	($st, $body) = get('/healthz', Authorization => "Bearer $token");
	last if $st == 200;
	usleep(100_000);
}
is($st, 200, '/healthz: 200 once connected');
my $health = decode_json($body);
is($health->{database}, 'connected', '/healthz: database connected');
ok(defined $health->{cursor} && $health->{cursor} ne '', '/healthz: cursor');
like($health->{lag_seconds}, qr/^\d+(\.\d+)?$/, '/healthz: lag in seconds');

($st, undef, $hdr) = get('/events');
is($st, 401, '/events without token: 401');
like($hdr->{'www-authenticate'} // '', qr/^Bearer/, '401 names the Bearer scheme');
($st) = get('/events', Authorization => 'Bearer wrong');
is($st, 401, '/events with a wrong token: 401');
($st) = get('/healthz');
is($st, 401, '/healthz without token: 401');
($st) = get('/');
is($st, 401, 'demo page without token: 401');
($st, $body) = get("/?token=$token");
is($st, 200, 'demo page with ?token=');
like($body, qr/EventSource/, 'demo page uses EventSource');
($st) = get("/nope?token=$token");
is($st, 404, 'unknown path: 404');
my $r = $http->post("http://127.0.0.1:$port/events?token=$token");
is($r->{status}, 405, 'POST: 405');

my $noauth = sse_open('/events', no_auth => 1);
sse_pump($noauth, 1);
is($noauth->{status}, 401, 'SSE without token: 401');
sse_close($noauth);

# ---------------------------------------------------------------------------
# filters

my $a = sse_open('/events?conversation=1');
my $b = sse_open("/events?conversation=2&conversation=3&token=$token", no_auth => 1);
my $c = sse_open('/events');
ok(sse_started($a) && sse_started($b) && sse_started($c), 'three streams open');
is($a->{status}, 200, 'SSE: 200');

admin_recall('id IN (1, 2, 3)');
admin_recall('id IN (4, 5, 6, 7)');
$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', 8); COMMIT");
admin_recall('id IN (9, 10)');
ok(wait_lines(10), 'relay printed the 10 events');

ok(sse_wait($c, 10), 'unfiltered client: every event');
ok(sse_wait($a, 2),  'conversation 1: its events');
ok(sse_wait($b, 4),  'conversations 2 and 3: their events');
sse_pump($_, 0.5) for ($a, $b, $c);
is_deeply(ids($a), [ 1, 6 ], 'conversation 1 gets 1 and 6 only');
is_deeply(ids($b), [ 2, 3, 7, 8 ], 'conversations 2 and 3 get theirs only');
is_deeply(ids($c), printed_after(undef), 'unfiltered client: same order as stdout');

my $lines = lines_printed();
my $ok = 1;
for my $i (0 .. $#{ $c->{events} })
{
	my $m = $c->{events}[$i];
	$ok &&= $m->{event} eq 'recall';
	$ok &&= $m->{data} eq $lines->[$i][0];
	$ok &&= $m->{id} eq $lines->[$i][1]{cursor};
}
ok($ok, 'each SSE message: event: recall, id: the cursor, data: the JSON line');

# heartbeat (every second here)
my $before = scalar @{ $a->{comments} };
sse_pump($a, 2.5);
cmp_ok(scalar @{ $a->{comments} }, '>', $before, 'heartbeat comment when idle');

# ---------------------------------------------------------------------------
# resume from the ring: Last-Event-ID and ?after=

my $last_a = $a->{events}[-1]{id};
sse_close($a);
my $last_b = $b->{events}[-1]{id};
sse_close($b);
admin_recall('id BETWEEN 11 AND 20');
$node->safe_psql('postgres',
	"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', 21); COMMIT");
ok(wait_lines(21), 'relay printed the next 11 events');

my $a2 = sse_open('/events?conversation=1', last_id => $last_a);
ok(sse_wait($a2, 3), 'resumed with Last-Event-ID');
my $b2 = sse_open("/events?conversation=2&conversation=3&after=$last_b");
ok(sse_wait($b2, 4), 'resumed with ?after=');
sse_pump($_, 0.5) for ($a2, $b2);
is_deeply(ids($a2), printed_after($last_a, 1), 'Last-Event-ID: exactly the missed events');
is_deeply(ids($a2), [ 11, 16, 21 ], '... which are 11, 16, 21');
is_deeply(ids($b2), printed_after($last_b, 2, 3), '?after=: exactly the missed events');

# then live
admin_recall('id = 26');
ok(sse_wait($a2, 4), 'resumed client gets live events');
is(ids($a2)->[-1], 26, '... the next one');
sse_close($_) for ($a2, $b2, $c);

# ---------------------------------------------------------------------------
# bad cursors: 400

my $bad = sse_open('/events', last_id => 'garbage');
sse_pump($bad, 2);
is($bad->{status}, 400, 'garbage Last-Event-ID: 400');
like($bad->{raw}, qr/invalid event cursor/, '400 says why');
sse_close($bad);
$bad = sse_open('/events?after=' . ('9' x 300));
sse_pump($bad, 2);
is($bad->{status}, 400, 'overlong ?after=: 400');
($st) = get("/events?from=yesterday&token=$token");
is($st, 400, 'bad ?from=: 400');
($st) = get('/events?after=12%3Axyz', Authorization => "Bearer $token");
is($st, 400, 'malformed ?after=: 400');

# ---------------------------------------------------------------------------
# resume after a restart of the relay: replayed from events_after()

kill 'TERM', $relay;
is(wait_exit($relay), 0, 'relay stopped');
$relay = start_relay();
$deadline = time + $WAIT;
while (time < $deadline)
{
	($st) = get('/healthz', Authorization => "Bearer $token");
	last if $st == 200;
	usleep(100_000);
}
my $first = lines_printed()->[0][1]{cursor};
my $a3 = sse_open('/events?conversation=1', last_id => $first);
ok(sse_wait($a3, 5), 'resumed from an old cursor after a relay restart');
sse_pump($a3, 0.5);
is_deeply(ids($a3), printed_after($first, 1),
	'replayed from the event log: exactly the events after the cursor');
admin_recall('id = 31');
ok(sse_wait($a3, 6), 'then live');
is(ids($a3)->[-1], 31, '... with the next event');

my $o = sse_open('/events?from=oldest');
ok(sse_wait($o, scalar @{ lines_printed() }), '?from=oldest: the retained log');
is_deeply(ids($o), printed_after(undef), '?from=oldest: in order');
sse_close($_) for ($a3, $o);

# ---------------------------------------------------------------------------
# /healthz while the server is down

$node->stop('fast');
$deadline = time + $WAIT;
while (time < $deadline)
{
	($st, $body) = get('/healthz', Authorization => "Bearer $token");
	last if $st == 503;
	usleep(100_000);
}
is($st, 503, '/healthz: 503 while the server is down');
like($body, qr/"database":"disconnected"/, '/healthz: says disconnected');
$node->start;
$deadline = time + $WAIT;
while (time < $deadline)
{
	($st) = get('/healthz', Authorization => "Bearer $token");
	last if $st == 200;
	usleep(100_000);
}
is($st, 200, '/healthz: 200 again after the server is back');

# ---------------------------------------------------------------------------
# a client that stops reading is dropped; another one is not delayed

my $slow = sse_open('/events', rcvbuf => 2048);
my $fast = sse_open('/events');
ok(sse_started($fast), 'fast client open');
usleep(300_000);
my $n0 = scalar @{ lines_printed() };
for my $k (0 .. 19)
{
	my $lo = 1000 + $k * 500;
	my $hi = $lo + 499;
	admin_recall("id BETWEEN $lo AND $hi");
	sse_pump($fast, 0.05);
}
ok(wait_lines($n0 + 10000), 'relay printed 10000 more events');
ok(sse_wait($fast, 10000), 'the reading client got all 10000 events');
is_deeply(ids($fast), printed_after(lines_printed()->[ $n0 - 1 ][1]{cursor}),
	'... in order');

# it reads again: gets what the kernel held, then the end of its stream
# (the relay notices it fell out of the ring when it can write again)
my $sdeadline = time + $WAIT;
sse_pump($slow, 0.2) while !$slow->{eof} && time < $sdeadline;
ok($slow->{eof}, 'the client that stopped reading sees its stream end');
my $got_slow = scalar @{ $slow->{events} };
cmp_ok($got_slow, '<', 10000, "it had received $got_slow events");
$sdeadline = time + $WAIT;
usleep(100_000)
  while slurp($err) !~ /fell more than 2000 events behind/ && time < $sdeadline;
like(slurp($err), qr/SSE client 127\.0\.0\.1:\d+ disconnected: it fell more than 2000 events behind/,
	'the disconnection is logged');
($st, $body) = get('/healthz', Authorization => "Bearer $token");
cmp_ok(decode_json($body)->{clients_dropped}, '>=', 1, '/healthz counts it');
($st, $body) = get('/metrics', Authorization => "Bearer $token");
my $metrics = parse_metrics($body);
is_deeply($metrics->{errors}, [], '/metrics parses');
is(sample($metrics, 'pg_recall_relay_sse_clients_dropped_total'), 1,
	'/metrics counts it: pg_recall_relay_sse_clients_dropped_total');

# and resumes by cursor
my $slow2 = sse_open('/events', last_id => $slow->{events}[-1]{id});
ok(sse_wait($slow2, 10000 - $got_slow), 'it resumes by cursor');
is_deeply([ @{ ids($slow) }, @{ ids($slow2) } ], ids($fast),
	'... and has every event once, in order');
sse_close($_) for ($slow, $slow2, $fast);

kill 'TERM', $relay;
is(wait_exit($relay), 0, 'relay stopped with SIGTERM while serving HTTP');

$node->stop;
done_testing();
