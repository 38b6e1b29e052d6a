# Copyright (c) pg_recall authors
#
# 011_events_stress.pl
#	  Four writers recall concurrently for several seconds (pgbench: single
#	  recalls, bulk recalls of three messages in one statement, slow
#	  transactions that commit after younger ones, aborted recalls, and
#	  recalls committed through PREPARE TRANSACTION / COMMIT PREPARED), while
#	  a reader follows recall.events_after() from recall.head(), saving the
#	  last cursor after every call.  Afterwards the reader has seen every
#	  committed event exactly once, in strictly increasing (xid, seq) cursor
#	  order, and nothing else; aborted recalls left no event.  With the
#	  library preloaded, a listener also gets every event's notification
#	  exactly once from the dispatcher.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# pgbench duration, and the bound of every wait, in seconds
my $DURATION = 6;
my $WAIT     = 60;

my $node = PostgreSQL::Test::Cluster->new('stress');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
max_prepared_transactions = 10
track_commit_timestamp = on
});
$node->start;

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION pg_recall;
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint,
    sender       text,
    sent_at      timestamptz DEFAULT now(),
    body         text
);
INSERT INTO messages (id, conversation, sender, body)
SELECT i, i % 50, 'alice', 'secret text ' || i FROM generate_series(1, 300000) AS i;
CREATE SEQUENCE ids;
SELECT recall.enable('messages', '{body}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation');
});

# ---------------------------------------------------------------------------
# the writers' scripts

my $dir = PostgreSQL::Test::Utils::tempdir;
my %scripts = (
	# one message
	'one.sql' => q{
UPDATE messages SET recalled_at = now() WHERE id = (SELECT nextval('ids'));
},
	# three messages in one statement
	'bulk.sql' => q{
UPDATE messages SET recalled_at = now()
WHERE id = ANY (ARRAY(SELECT nextval('ids') FROM generate_series(1, 3)));
},
	# a slow transaction: younger ones commit before it
	'slow.sql' => q{
BEGIN;
UPDATE messages SET recalled_at = now() WHERE id = (SELECT nextval('ids'));
\sleep 20 ms
UPDATE messages SET recalled_at = now() WHERE id = (SELECT nextval('ids'));
COMMIT;
},
	# rolled back: no event
	'abort.sql' => q{
BEGIN;
UPDATE messages SET recalled_at = now()
WHERE id = ANY (ARRAY(SELECT nextval('ids') FROM generate_series(1, 2)));
ROLLBACK;
},
	# two-phase
	'prepared.sql' => q{
BEGIN;
UPDATE messages SET recalled_at = now() WHERE id = (SELECT nextval('ids'));
PREPARE TRANSACTION 'stress_:client_id';
COMMIT PREPARED 'stress_:client_id';
},);
for my $name (keys %scripts)
{
	open my $fh, '>', "$dir/$name" or die "could not write $dir/$name: $!";
	print $fh $scripts{$name};
	close $fh;
}

# ---------------------------------------------------------------------------
# reader and listener

my $start = $node->safe_psql('postgres', 'SELECT recall.head()');
like($start, qr/^\d+:0$/, 'head() is a cursor');

my $reader   = $node->background_psql('postgres', timeout => $WAIT);
my $listener = $node->background_psql('postgres', timeout => $WAIT);
# the time limit applies to each command, not to the session
$reader->set_query_timer_restart;
$listener->set_query_timer_restart;
$listener->query_safe('LISTEN recall');

my $cursor = $start;
my @seen;          # seqs in the order the reader got them
my $order_ok = 1;  # every cursor after the previous one
my $calls    = 0;
my @prev = split /:/, $start;

# One call of events_after from the saved cursor; returns the rows read.
sub read_some
{
	my $out = $reader->query_safe(
		"SELECT cursor, seq FROM recall.events_after('$cursor', 500)");
	$calls++;
	my $n = 0;
	for my $line (split /\n/, $out)
	{
		next if $line eq '';
		my ($c, $seq) = split /\|/, $line;
		my ($x, $s) = split /:/, $c;
		if ($s != $seq
			|| !($x > $prev[0] || ($x == $prev[0] && $s > $prev[1])))
		{
			$order_ok = 0;
			diag "cursor $c (seq $seq) does not follow $prev[0]:$prev[1]";
		}
		@prev = ($x, $s);
		push @seen, $seq;
		$cursor = $c;
		$n++;
	}
	return $n;
}

my @notes;    # [first_seq, last_seq, count]
my $bad_payloads = 0;

sub listen_some
{
	my $out = $listener->query('SELECT 1');
	while ($out =~
		/^Asynchronous notification "recall" with payload "(.*)" received from server process with PID \d+\.\r?$/mg
	  )
	{
		my $p = eval { decode_json($1) };
		if (!ref $p)
		{
			$bad_payloads++;
		}
		elsif ($p->{op} eq 'recall')
		{
			push @notes, [ $p->{seq}, $p->{seq}, 1 ];
		}
		elsif ($p->{op} eq 'recall_bulk')
		{
			push @notes, [ $p->{first_seq}, $p->{last_seq}, $p->{count} ];
		}
		else
		{
			$bad_payloads++;
		}
	}
}

# ---------------------------------------------------------------------------
# run

my ($pb_out, $pb_err) = ('', '');
my @pgbench = (
	'pgbench', '-n', '-M', 'simple', '-c', '4', '-j', '4',
	'-T', $DURATION,
	'-f', "$dir/one.sql\@6",
	'-f', "$dir/bulk.sql\@2",
	'-f', "$dir/slow.sql\@1",
	'-f', "$dir/abort.sql\@1",
	'-f', "$dir/prepared.sql\@1",
	'-h', $node->host, '-p', $node->port, 'postgres');
my $pb;
{
	local $ENV{PGOPTIONS} = '-c recall.actor=alice';
	$pb = IPC::Run::start(\@pgbench, '>', \$pb_out, '2>', \$pb_err,
		IPC::Run::timeout($DURATION + $WAIT));
}

my $reads_during = 0;
while ($pb->pumpable)
{
	$pb->pump_nb;
	$reads_during += read_some();
	listen_some();
	usleep(20_000);
}
my $pb_ok = $pb->finish;
ok($pb_ok, 'pgbench ran') or diag "stdout:\n$pb_out\nstderr:\n$pb_err";
note $pb_out;
my ($failed) = $pb_out =~ /number of failed transactions: (\d+)/;
is($failed // 0, 0, 'no transaction failed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'),
	'0', 'no prepared transaction left');

# every writer is done: read to the end
my $deadline = time + $WAIT;
while (time < $deadline)
{
	last if read_some() == 0;
}
ok($reads_during > 0, "the reader got events while the writers ran ($reads_during)");

# ---------------------------------------------------------------------------
# the reader

# (every transaction has ended: nothing can still appear behind the cursor)
my @committed = split /\n/,
  $node->safe_psql('postgres',
	"SELECT seq FROM recall.events WHERE tbl = 'messages'::regclass ORDER BY seq");
my $ncommitted = scalar @committed;
ok($ncommitted > 500, "many recalls committed ($ncommitted)");
note "reader: $calls calls, " . scalar(@seen) . " events";

my %count;
$count{$_}++ for @seen;
my @twice   = grep { $count{$_} > 1 } sort { $a <=> $b } keys %count;
my %in_log  = map { $_ => 1 } @committed;
my @missing = grep { !$count{$_} } @committed;
my @extra   = grep { !$in_log{$_} } keys %count;
is(scalar @twice,   0, 'no event seen twice') or diag "seen twice: @twice[0 .. ($#twice < 20 ? $#twice : 19)]";
is(scalar @missing, 0, 'no committed event missed')
  or diag "missed: @missing[0 .. ($#missing < 20 ? $#missing : 19)]";
is(scalar @extra, 0, 'no event seen that is not in the log');
is(scalar @seen, $ncommitted, 'the reader saw exactly the committed events');
ok($order_ok, 'every cursor sorts after the previous one and names its event');

# the run was meaningful: transactions committed out of xid order (a younger
# one before an older one), which a reader must not skip past
my $out_of_order = $node->safe_psql(
	'postgres', q{
SELECT count(*) FROM (
    SELECT ts < max(ts) OVER (ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS early
    FROM (SELECT DISTINCT xid AS x, pg_xact_commit_timestamp(xid::xid) AS ts
          FROM recall.events) t) u
WHERE early
});
ok($out_of_order > 0,
	"transactions committed out of xid order during the run ($out_of_order)");

# aborted recalls left nothing: one event per recalled row and back
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM messages m
WHERE (m.recalled_at IS NOT NULL) <> EXISTS (
    SELECT 1 FROM recall.events e
    WHERE e.tbl = 'messages'::regclass AND e.pk = jsonb_build_object('id', m.id))
}),
	'0',
	'an event for every recalled message, none for the others');
is( $node->safe_psql(
		'postgres', q{
SELECT count(*) FROM (SELECT pk FROM recall.events GROUP BY pk HAVING count(*) > 1) d
}),
	'0',
	'one event per message');
# pgbench ran aborted transactions, so some ids were taken and not recalled
ok( $node->safe_psql(
		'postgres',
		"SELECT count(*) > 0 FROM messages WHERE recalled_at IS NULL AND id <= (SELECT last_value FROM ids)"
	),
	'aborted recalls happened and left their messages unrecalled');

# ---------------------------------------------------------------------------
# the listener: every event notified once

$deadline = time + $WAIT;
my $notified = 0;
while (time < $deadline)
{
	listen_some();
	$notified = 0;
	$notified += $_->[2] for @notes;
	last if $notified >= $ncommitted;
	usleep(100_000);
}
# anything sent twice would come by now
my $quiet = time + 1.5;
while (time < $quiet)
{
	listen_some();
	usleep(100_000);
}
is($bad_payloads, 0, 'every payload is a recall payload');
$node->safe_psql('postgres',
	'CREATE TABLE got (n integer, first_seq bigint, last_seq bigint, cnt integer)');
{
	my $i = 0;
	my @rows = map { $i++; "($i, $_->[0], $_->[1], $_->[2])" } @notes;
	while (my @chunk = splice(@rows, 0, 2000))
	{
		$node->safe_psql('postgres',
			'INSERT INTO got VALUES ' . join(',', @chunk));
	}
}
# a notification covers the events of its statement (same xid and dispatch
# group) from first_seq to last_seq
my $check = $node->safe_psql(
	'postgres', q{
CREATE TABLE cover AS
SELECT g.n, e.seq
FROM got g
JOIN recall.events f ON f.seq = g.first_seq
JOIN recall.events e ON e.xid = f.xid AND e.dispatch_group = f.dispatch_group
                    AND e.tbl = f.tbl AND e.seq BETWEEN g.first_seq AND g.last_seq;
SELECT (SELECT count(*) FROM got g
        WHERE g.cnt <> (SELECT count(*) FROM cover c WHERE c.n = g.n)),
       (SELECT count(*) FROM recall.events e
        WHERE NOT EXISTS (SELECT 1 FROM cover c WHERE c.seq = e.seq)),
       (SELECT count(*) FROM (SELECT seq FROM cover GROUP BY seq HAVING count(*) > 1) d),
       (SELECT count(*) FROM (SELECT DISTINCT xid, dispatch_group FROM recall.events) s),
       (SELECT count(*) FROM got);
});
my ($bad_counts, $not_notified, $notified_twice, $statements, $notifications) =
  split /\|/, $check;
is($bad_counts,     0, 'every notification names the events of one statement');
is($not_notified,   0, 'every committed event notified');
is($notified_twice, 0, 'no event notified twice');
note "$statements statements, $notifications notifications";
is($notifications, $statements, 'one notification per statement')
  or diag 'statements with more than one notification (seqs of each):',
  map { "\n  $_" } split /\n/,
  $node->safe_psql(
	'postgres', q{
SELECT string_agg(c.seq::text, ',' ORDER BY c.seq) || ' in '
       || count(DISTINCT c.n) || ' notifications'
FROM cover c JOIN recall.events e ON e.seq = c.seq
GROUP BY e.xid, e.dispatch_group
HAVING count(DISTINCT c.n) > 1
});

$reader->quit;
$listener->quit;
$node->stop;
done_testing();
