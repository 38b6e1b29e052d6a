# Copyright (c) pg_recall authors
#
# 012_worker_budget.pl
#	  The background workers of all databases fit one budget,
#	  recall.max_workers (two here).  Six databases recall at the same
#	  time: every database's recalls reach its listener, the server log
#	  says that a database waited for a worker, no more than two pg_recall
#	  workers ever run at once (sampled from pg_stat_activity every few
#	  milliseconds while they work), and once idle for
#	  recall.worker_idle_timeout no worker is left but the launcher.
#	  Parallel query still gets its workers while pg_recall's hold the
#	  whole budget.  A dispatcher that keeps failing (a trigger on its
#	  position raises) backs off in its own database only: another
#	  database's first notification arrives, and so does that of a database
#	  created after the failing one was dropped (their delays are logged,
#	  not asserted).  A worker killed with SIGKILL would restart the whole
#	  cluster (and its shared memory), so failures here are errors, which
#	  is what a worker's back-off is for.

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# Bound of every wait, in seconds.
my $WAIT = 60;

# Databases, and recalls per database in the busy phase.
my @DBS     = map { "d$_" } 1 .. 6;
my $RECALLS = 15;

my $node = PostgreSQL::Test::Cluster->new('budget');
$node->init;
$node->append_conf(
	'postgresql.conf', q{
shared_preload_libraries = 'pg_recall'
recall.max_workers = 2
recall.worker_idle_timeout = '2s'
recall.purge_delay = '2s'
max_worker_processes = 8
max_parallel_workers = 8
max_parallel_workers_per_gather = 2
});
$node->start;

my $WORKERS =
  "backend_type IN ('pg_recall dispatcher', 'pg_recall purger', 'pg_recall rebuilder')";

# ---------------------------------------------------------------------------
# helpers

# Poll a query until it returns $expected (default 't'), at most $WAIT s.
sub wait_until
{
	my ($db, $query, $expected) = @_;
	$expected = 't' unless defined $expected;
	my $deadline = time + $WAIT;
	my $out      = '';
	while (time < $deadline)
	{
		my ($rc, $stdout) = $node->psql($db, $query, timeout => $WAIT);
		$out = $stdout // '';
		return 1 if defined $rc && $rc == 0 && $out eq $expected;
		usleep(100_000);
	}
	diag "timed out: $query\nexpected: $expected\nlast output: $out";
	return 0;
}

# A listener on channel "recall" of a database.
sub new_listener
{
	my ($db) = @_;
	my $l = {
		db   => $db,
		psql => $node->background_psql($db, timeout => $WAIT),
		keys => {}
	};
	$l->{psql}->set_query_timer_restart;
	$l->{psql}->query_safe('LISTEN recall');
	return $l;
}

# Collect the keys of the single-message notifications that arrived.
sub pump
{
	my ($l) = @_;
	my $out = $l->{psql}->query('SELECT 1');
	while ($out =~
		/^Asynchronous notification "recall" with payload "(.*)" received from server process with PID \d+\.\r?$/mg
	  )
	{
		my $p = eval { decode_json($1) };
		$l->{keys}{ $p->{pk}{id} }++ if ref $p && $p->{op} eq 'recall';
	}
}

# Wait until a listener has the notifications of every key given.
sub wait_keys
{
	my ($l, @keys) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		pump($l);
		return 1 unless grep { !$l->{keys}{$_} } @keys;
		usleep(20_000);
	}
	diag "$l->{db}: timed out waiting for keys "
	  . join(',', grep { !$l->{keys}{$_} } @keys);
	return 0;
}

sub quit_listener
{
	my ($l) = @_;
	eval { $l->{psql}->quit; };
}

# Recall one message, as its sender.
sub recall_sql
{
	my ($id) = @_;
	return "SELECT recall.recall('messages', ${id}::bigint, 'alice');";
}

# Recall $id in $db and return how long its notification took to arrive.
sub timed_recall
{
	my ($l, $id) = @_;
	my $t0 = time;
	$node->safe_psql($l->{db}, recall_sql($id));
	return wait_keys($l, $id) ? time - $t0 : undef;
}

# The pg_recall workers running now, but the launcher.
sub running_workers
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $WORKERS");
}

my $schema = q{
CREATE EXTENSION pg_recall;
CREATE TABLE messages (id bigint PRIMARY KEY, sender text, body text);
INSERT INTO messages SELECT i, 'alice', 'secret text ' || i FROM generate_series(1, 500) AS i;
SELECT recall.enable('messages', '{body}', sender => 'sender');
};

$node->safe_psql('postgres', "CREATE DATABASE $_") for @DBS;
$node->safe_psql($_, $schema) for @DBS;

# Samples, every 2 ms for "secs" seconds, how many pg_recall workers run:
# the most at once, and in how many samples any ran.  Read-only (no xid,
# so it holds back no one's xmin); the statistics snapshot is cleared
# before each sample, else pg_stat_activity would not change within it.
$node->safe_psql(
	'postgres', qq{
CREATE FUNCTION sample_workers(secs float8, OUT most int, OUT busy int)
LANGUAGE plpgsql AS \$\$
DECLARE
    n    int;
    stop timestamptz := clock_timestamp() + secs * interval '1 s';
BEGIN
    most := 0;
    busy := 0;
    WHILE clock_timestamp() < stop LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT count(*) INTO n FROM pg_stat_activity WHERE $WORKERS;
        most := greatest(most, n);
        IF n > 0 THEN
            busy := busy + 1;
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
END
\$\$;
});

# ---------------------------------------------------------------------------
# six databases at once, two workers

ok( wait_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $WORKERS", '0'),
	'no worker before any recall (start-up checks done)');

my %listener = map { $_ => new_listener($_) } @DBS;

my ($sample_out, $sample_err) = ('', '');
my $sampler = IPC::Run::start(
	[
		'psql', '-XAtq', '-d', $node->connstr('postgres'),
		'-c',   'SELECT most, busy FROM sample_workers(12)'
	],
	'>', \$sample_out, '2>', \$sample_err);

# every database recalls, one message per transaction, at the same time
my @writers;
for my $db (@DBS)
{
	my $script = join("\n",
		map { recall_sql($_) . "\nSELECT pg_sleep(0.05);" } 1 .. $RECALLS);
	my ($out, $err) = ('', '');
	push @writers,
	  IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d',
			$node->connstr($db), '-c', $script ],
		'>', \$out, '2>', \$err);
}
my $writers_ok = 1;
for my $w (@writers)
{
	$w->finish;
	$writers_ok &&= ($w->result == 0);
}
ok($writers_ok, 'six databases recalled concurrently');

for my $db (@DBS)
{
	ok(wait_keys($listener{$db}, 1 .. $RECALLS),
		"$db: every recall notified to its listener");
}
$sampler->finish;
my ($most, $busy) = split /\|/, ($sample_out =~ s/\s+$//r);
ok(defined $busy && $busy > 0, 'workers were sampled while they worked')
  or diag "sampler: $sample_out $sample_err";
cmp_ok($most // 99, '<=', 2,
	'never more than recall.max_workers (2) pg_recall workers at once');
note "most workers at once: " . ($most // 'none') . ", samples with workers: " . ($busy // 'none');
for my $db (@DBS)
{
	my $extra = grep { $_ > 1 } values %{ $listener{$db}{keys} };
	is($extra, 0, "$db: no recall notified twice");
}
quit_listener($_) for values %listener;

like(
	slurp_file($node->logfile),
	qr/pg_recall: database "d\d" is waiting for a background worker: all 2 of recall.max_workers are busy/,
	'the server log says a database waited for a worker');

ok( wait_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $WORKERS", '0'),
	'idle for recall.worker_idle_timeout: no pg_recall worker left');
is( $node->safe_psql('postgres',
		"SELECT string_agg(backend_type, ',') FROM pg_stat_activity WHERE backend_type LIKE 'pg_recall%'"
	),
	'pg_recall launcher',
	'... but the launcher');

# ---------------------------------------------------------------------------
# parallel query gets its workers while pg_recall's hold the budget

$node->safe_psql('postgres',
	"ALTER SYSTEM SET recall.worker_idle_timeout = '1min';"
	  . " ALTER SYSTEM SET recall.purge_delay = 0; SELECT pg_reload_conf();");
sleep 1;
$listener{d1} = new_listener('d1');
$listener{d2} = new_listener('d2');
$node->safe_psql('d1', recall_sql(100));
$node->safe_psql('d2', recall_sql(100));
ok(wait_keys($listener{d1}, 100) && wait_keys($listener{d2}, 100),
	'd1 and d2 notified');
ok(wait_until('postgres', "SELECT count(*) FROM pg_stat_activity WHERE $WORKERS", '2'),
	'two pg_recall workers run: the whole budget');
$node->safe_psql('postgres',
	'CREATE TABLE big AS SELECT i FROM generate_series(1, 200000) AS i; ANALYZE big;');
my $plan = $node->safe_psql(
	'postgres', q{
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM big;
});
my ($launched) = $plan =~ /Workers Launched: (\d+)/;
ok(defined $launched && $launched > 0,
	'a parallel seq scan launches workers meanwhile')
  or diag $plan;
note "parallel workers launched: " . ($launched // 'none');
is(running_workers(), '2', 'pg_recall workers still running after it');
quit_listener($listener{d1});
quit_listener($listener{d2});

# ---------------------------------------------------------------------------
# back-off: a dispatcher that keeps failing does not delay other databases

$node->safe_psql('postgres',
	"ALTER SYSTEM SET recall.worker_idle_timeout = '2s'; SELECT pg_reload_conf();");
ok( wait_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $WORKERS", '0'),
	'workers gone again');

$node->safe_psql(
	'd1', q{
CREATE FUNCTION dispatch_gate_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dispatch gate closed';
END
$$;
CREATE TRIGGER dispatch_gate BEFORE UPDATE ON recall.dispatch_state
    FOR EACH ROW EXECUTE FUNCTION dispatch_gate_check();
});
my $log_offset = -s $node->logfile;
$node->safe_psql('d1', recall_sql(200));

# 1 + 2 + 4 s of back-off: the fourth failure comes about 7 s later
my $failures = 0;
my $deadline = time + $WAIT;
while (time < $deadline)
{
	my $log = substr(slurp_file($node->logfile), $log_offset);
	$failures = () = $log =~ /ERROR:  dispatch gate closed/g;
	last if $failures >= 4;
	usleep(200_000);
}
cmp_ok($failures, '>=', 4, 'the dispatcher of d1 keeps failing');

my $l3    = new_listener('d3');
my $delay = timed_recall($l3, 300);
ok(defined $delay,
	"another database's first notification arrives while d1 backs off");
note sprintf('d3 first notification after %.3f s (d1 failing)', $delay // -1);
quit_listener($l3);

{
	my $log = substr(slurp_file($node->logfile), $log_offset);
	my @at  = $log =~ /^(\S+ \S+) \S+ \[\d+\] ERROR:  dispatch gate closed/mg;
	note 'd1 dispatcher failures at: ' . join(', ', @at);
}

# the failing database goes; a new one (maybe in its slot) starts afresh
$node->safe_psql('postgres', 'DROP DATABASE d1');
$node->safe_psql('postgres', 'CREATE DATABASE d7');
$node->safe_psql('d7', $schema);
ok( wait_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE $WORKERS AND datname = 'd7'",
		'0'),
	'd7: the dispatcher CREATE EXTENSION started has left');
my $l7 = new_listener('d7');
$delay = timed_recall($l7, 1);
ok(defined $delay, 'a new database\'s first notification arrives');
note sprintf('d7 first notification after %.3f s', $delay // -1);
quit_listener($l7);

# ---------------------------------------------------------------------------
# no worker crashed; the launcher never restarted

my $log = slurp_file($node->logfile);
unlike($log, qr/was terminated by signal/, 'no server process crashed');
unlike($log, qr/background worker "pg_recall launcher" \(PID \d+\) exited/,
	'the launcher never exited');

# ---------------------------------------------------------------------------
# no background worker slot left (the launcher and the logical replication
# launcher take both): logged, never silent

$node->stop;
$node->append_conf('postgresql.conf', 'max_worker_processes = 2');
$log_offset = -s $node->logfile;
$node->start;
# the launcher's look at every database at start finds no slot already
$node->safe_psql('d2', recall_sql(400));
my $found = 0;
$deadline = time + $WAIT;
while (time < $deadline && !$found)
{
	$found = substr(slurp_file($node->logfile), $log_offset) =~
	  /pg_recall: database "d2" is waiting for a background worker: no background worker slot is free/;
	usleep(100_000) unless $found;
}
ok($found, 'a worker that finds no background worker slot is logged');
like(
	substr(slurp_file($node->logfile), $log_offset),
	qr/HINT:  Raise max_worker_processes \(now 2\)/,
	'... with a hint');

$node->stop;
done_testing();
