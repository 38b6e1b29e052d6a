# Copyright (c) pg_recall authors
#
# 023_relay_browser.pl
#	  The relay's demo page (relay/demo.html, served at GET /) in a real
#	  browser: headless Chromium opens it, and its DOM shows a recall made
#	  before the page loaded, one made while it loads, and one made while
#	  it is open, each within a few seconds; the page passes ?token= on to
#	  EventSource and reports itself live.
#
#	  The DOM is read through the DevTools protocol (Runtime.evaluate over
#	  the page's WebSocket, with a minimal client below), not with
#	  --dump-dom: --dump-dom waits for the page's network to go idle (or
#	  its --virtual-time-budget to pass, which virtual time cannot do while
#	  a request is open), and an EventSource stream never ends.
#
#	  Skipped when chromium (Debian package "chromium") is not installed.

use strict;
use warnings;

use File::Spec;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use RelayNode qw(relay_node);
use Test::More;
use Time::HiRes qw(time usleep);

my $WAIT = 30;

# Chromium, if installed.
my $chromium;
for my $name (qw(chromium chromium-browser))
{
	for my $d (File::Spec->path(), '/usr/bin')
	{
		if (-x "$d/$name")
		{
			$chromium = "$d/$name";
			last;
		}
	}
	last if $chromium;
}
plan skip_all => 'chromium is not installed (Debian package "chromium"): browser test skipped'
  unless $chromium;

my $node = relay_node('relay_browser', rows => 100, conversation => '7 + g % 2');

my $dir   = PostgreSQL::Test::Utils::tempdir;
my $conn  = $node->connstr('postgres');
my $port  = PostgreSQL::Test::Cluster::get_free_port();
my $dport = PostgreSQL::Test::Cluster::get_free_port();
my $token = 'browser-token';
PostgreSQL::Test::Utils::append_to_file("$dir/token", "$token\n");

# Start a program in its own process group, output to files.
sub spawn
{
	my ($log, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		POSIX::setsid();
		delete $ENV{PGAPPNAME};
		open(STDIN,  '<',  '/dev/null') or POSIX::_exit(126);
		open(STDOUT, '>>', "$log.out") or POSIX::_exit(126);
		open(STDERR, '>>', "$log.err") or POSIX::_exit(126);
		exec(@cmd) or POSIX::_exit(127);
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

sub recall
{
	my ($id) = @_;
	$node->safe_psql('postgres',
		"BEGIN; SET LOCAL recall.actor = 'alice'; SELECT recall.recall('messages', $id); COMMIT");
}

# ---------------------------------------------------------------------------
# a minimal WebSocket client for the DevTools protocol

sub ws_connect
{
	my ($url) = @_;
	my ($host, $p, $path) = $url =~ m{^ws://([^:/]+):(\d+)(/.*)$}
	  or die "unexpected WebSocket URL $url";
	my $s = IO::Socket::INET->new(
		PeerAddr => $host,
		PeerPort => $p,
		Proto    => 'tcp',
		Timeout  => 10) or die "connect $url: $!";
	binmode $s;
	my $key = encode_base64(join('', map { chr(int(rand(256))) } 1 .. 16), '');
	print $s "GET $path HTTP/1.1\r\nHost: $host:$p\r\nUpgrade: websocket\r\n"
	  . "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\n"
	  . "Sec-WebSocket-Version: 13\r\n\r\n";
	my $resp = '';
	while ($resp !~ /\r\n\r\n/)
	{
		sysread($s, my $c, 1) or die "WebSocket handshake: connection closed";
		$resp .= $c;
	}
	die "WebSocket handshake refused: $resp" unless $resp =~ m{^HTTP/1\.1 101};
	return $s;
}

sub ws_read_n
{
	my ($s, $n) = @_;
	my $d = '';
	while (length($d) < $n)
	{
		my $r = sysread($s, my $b, $n - length $d);
		die "WebSocket closed" unless $r;
		$d .= $b;
	}
	return $d;
}

sub ws_send
{
	my ($s, $text) = @_;
	my $len = length $text;
	my $hdr = chr(0x81);    # FIN, text
	if    ($len < 126)   { $hdr .= chr(0x80 | $len); }
	elsif ($len < 65536) { $hdr .= chr(0x80 | 126) . pack('n', $len); }
	else                 { $hdr .= chr(0x80 | 127) . pack('Q>', $len); }
	my $mask = join('', map { chr(int(rand(256))) } 1 .. 4);
	my $masked = substr($text ^ ($mask x (int($len / 4) + 1)), 0, $len);
	syswrite($s, $hdr . $mask . $masked);
}

sub ws_recv
{
	my ($s) = @_;
	my $msg = '';
	for (;;)
	{
		my ($b0, $b1) = unpack('CC', ws_read_n($s, 2));
		my $len = $b1 & 0x7f;
		$len = unpack('n',  ws_read_n($s, 2)) if $len == 126;
		$len = unpack('Q>', ws_read_n($s, 8)) if $len == 127;
		$msg .= $len ? ws_read_n($s, $len) : '';
		return $msg if $b0 & 0x80;
	}
}

my $cdp_id = 0;

# Evaluate an expression in the page; its value.
sub evaluate
{
	my ($s, $expr) = @_;
	my $id = ++$cdp_id;
	ws_send($s,
		encode_json(
			{
				id     => $id,
				method => 'Runtime.evaluate',
				params => { expression => $expr, returnByValue => JSON::PP::true }
			}));
	for (;;)
	{
		my $r = decode_json(ws_recv($s));
		next unless ($r->{id} // 0) == $id;
		return $r->{result}{result}{value};
	}
}

# ---------------------------------------------------------------------------
# the page in Chromium

my $relay = spawn("$dir/relay", 'pg_recall_relay', '-d', $conn,
	'--http', "127.0.0.1:$port", '--token-file', "$dir/token");
my $http = HTTP::Tiny->new(timeout => 5);
my $deadline = time + $WAIT;
my $st = 0;
while (time < $deadline)
{
	$st = $http->get("http://127.0.0.1:$port/healthz?token=$token")->{status};
	last if $st == 200;
	usleep(100_000);
}
is($st, 200, 'relay up');

# made before the page loads
recall(1);

my $browser = spawn(
	"$dir/chromium", $chromium,
	'--headless', '--no-sandbox', '--disable-gpu',
	'--disable-background-networking', '--disable-component-update',
	'--disable-sync', '--no-first-run', '--no-default-browser-check',
	"--user-data-dir=$dir/profile", "--remote-debugging-port=$dport",
	"http://127.0.0.1:$port/?token=$token");

# made while it loads
recall(3);

my $ws_url;
$deadline = time + $WAIT;
while (time < $deadline && !$ws_url)
{
	my $r = $http->get("http://127.0.0.1:$dport/json/list");
	if ($r->{success})
	{
		my ($page) = grep { $_->{type} eq 'page' && $_->{url} =~ /:$port\// }
		  @{ decode_json($r->{content}) };
		$ws_url = $page->{webSocketDebuggerUrl} if $page;
	}
	usleep(200_000) unless $ws_url;
}
ok($ws_url, 'Chromium opened the demo page')
  or diag PostgreSQL::Test::Utils::slurp_file("$dir/chromium.err");

SKIP:
{
	skip 'no DevTools connection to the page', 6 unless $ws_url;
	my $ws = ws_connect($ws_url);

	my $dom_expr = q{JSON.stringify({
		state: document.getElementById('status').getAttribute('data-state'),
		count: document.getElementById('count').getAttribute('data-count'),
		pks: Array.from(document.querySelectorAll('.recall')).map(function (e) {
			return JSON.parse(e.getAttribute('data-pk')).id; }),
		convs: Array.from(document.querySelectorAll('.conversation')).map(function (e) {
			return e.getAttribute('data-conversation'); })
	})};

	# Poll the DOM until it shows a recalled id; seconds it took, or undef.
	my $dom;
	my $wait_for = sub {
		my ($id, $secs) = @_;
		my $t0 = time;
		while (time - $t0 < $secs)
		{
			my $v = evaluate($ws, $dom_expr);
			$dom = decode_json($v) if defined $v;
			return time - $t0 if $dom && grep { $_ == $id } @{ $dom->{pks} };
			usleep(100_000);
		}
		return undef;
	};

	ok(defined $wait_for->(1, 10), 'a recall made before the page loaded is shown')
	  or diag explain $dom;
	ok(defined $wait_for->(3, 10), 'a recall made while it loaded is shown')
	  or diag explain $dom;
	is($dom->{state}, 'live', 'the page says it is live');

	# made while the page is open
	recall(2);
	my $took = $wait_for->(2, 10);
	ok(defined $took && $took < 5, 'a recall made while the page is open shows within 5 s')
	  or diag explain $dom;
	note sprintf('live recall shown after %.2f s', $took) if defined $took;
	is_deeply([ sort { $a <=> $b } @{ $dom->{pks} } ], [ 1, 2, 3 ],
		'exactly the recalled ids, each once');
	is_deeply([ sort @{ $dom->{convs} } ], [ '7', '8' ],
		'listed per conversation');
	close $ws;
}

kill 'TERM', -$browser;
wait_exit($browser, 10) // do { kill 'KILL', -$browser; wait_exit($browser, 5) };
kill 'TERM', $relay;
is(wait_exit($relay), 0, 'relay stopped');

$node->stop;
done_testing();
