# Copyright (c) pg_recall authors
#
# 042_security_crash.pl
#	  Issue 12's crashes and jams, on a cluster with pg_recall preloaded
#	  (the background dispatcher sends the notifications).  No input from
#	  any role may crash the server or stop recall for others:
#	  - 5: the internal recall._copies_put and recall._registry_put called
#	    by an unprivileged table owner with a NULL or short wiped_values or
#	    an empty channel: refused, or at least no crash at the next recall,
#	    and the dispatcher still notifies another role's recall;
#	  - 6: an expression index and a partial index a superuser adds to
#	    recall.events: recalls work, the expression index holds the new
#	    rows (amcheck), the partial index only the rows of its predicate;
#	  - every SQL-callable function of the extension (pg_proc, schema
#	    recall) called with NULLs and odd values, by the unprivileged role
#	    (and with NULLs by a superuser): no crash, no internal error
#	    (XX000);
#	  - afterwards, a recall is still notified.
#	  A crash is seen in the server log ("terminated by signal", "server
#	  process ... was terminated", "terminating any other active server
#	  processes") and by the server not answering at once.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SecurityKit;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('security_crash');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
restart_after_crash = on
});
$node->start;

my $db = 'postgres';
my $OTHER = 'regress_sec_other';
$node->safe_psql($db, 'CREATE EXTENSION pg_recall');
attacker_kit($node, $db);
$node->safe_psql(
	$db, qq{
CREATE ROLE $OTHER LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION;
CREATE SCHEMA $OTHER AUTHORIZATION $OTHER;
});

# Run $code (a step that may crash the server), then check that nothing
# crashed and that the server answers at once; after a crash, wait for the
# server to come back so that the next steps still run.
sub no_crash
{
	my ($name, $code) = @_;
	my $offset = -s $node->logfile;
	$code->();
	my ($rc) = $node->psql($db, 'SELECT 1', timeout => $WAIT);
	my @crashes = crashes_in(log_since($node, $offset));
	is(join("\n", @crashes), '', "$name: no server process crashed");
	ok(defined $rc && $rc == 0, "$name: the server still answers");
	if (@crashes || !defined $rc || $rc != 0)
	{
		wait_ready($node);
		listen_again();
	}
	return;
}

# A SQLSTATE that means "refused or failed cleanly": an error, not an
# internal one (XX000) nor a system one (58), nor a call that missed its
# function (42883: the test would prove nothing).
sub clean_refusal
{
	my ($state) = @_;
	return $state =~ /^[0-9A-Z]{5}$/ && $state !~ /^(XX|58)/ && $state ne '42883';
}

# A listener on this database's channels, in a background psql; made
# again after a crash ended its session.
my $listener;
sub listen_again
{
	eval { $listener->quit if $listener; };
	$listener = $node->background_psql($db, timeout => $WAIT);
	$listener->set_query_timer_restart;
	$listener->query_safe('LISTEN recall');
	$listener->query_safe('LISTEN other_chan');
	return;
}
listen_again();

# Wait for a notification on $channel whose payload names $table.
sub notified
{
	my ($channel, $table, $secs) = @_;
	my $deadline = time + ($secs // 15);
	while (time < $deadline)
	{
		my $out = eval { $listener->query('SELECT 1') } // '';
		while ($out =~ /^Asynchronous notification "([^"]*)" with payload "(.*)" received/mg)
		{
			return 1 if $1 eq $channel && index($2, $table) >= 0;
		}
		usleep(200_000);
	}
	return 0;
}

# The message table and copy table of one case, owned by the attacker.
sub case_tables
{
	my ($name, $copy_content) = @_;
	query_as(
		$node, $db, $ATTACKER, qq{
CREATE TABLE regress_sec.m$name (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q$name (qid int PRIMARY KEY, ref int, quoted text, extra text, more text);
CREATE INDEX ON regress_sec.q$name (ref);
INSERT INTO regress_sec.m$name VALUES (1, current_user, 'c5-' || 'secret'), (2, current_user, 'kept');
INSERT INTO regress_sec.q$name VALUES (1, 1, 'c5-' || 'secret', 'e', 'm');
SELECT recall.enable('regress_sec.m$name', '{body}', sender => 'sender');
SELECT recall.add_copy('regress_sec.m$name', 'regress_sec.q$name', '{ref}', '$copy_content');
});
	return;
}

# ---------------------------------------------------------------------------
# 5: hostile registrations through the internal functions

# The attacker rewrites its own registration of a case's table through an
# internal function (_copies_put or _registry_put): $kind is 'copies' or
# 'tables', $assign a PL/pgSQL assignment to the row r; returns the
# SQLSTATE.
sub spoil
{
	my ($name, $kind, $assign) = @_;
	my $put = $kind eq 'copies' ? '_copies_put' : '_registry_put';
	return sqlstate_of(
		$node, $db, $ATTACKER, qq{
DO \$\$
DECLARE
    r recall.$kind;
BEGIN
    SELECT * INTO r FROM recall.$kind x WHERE x.tbl = 'regress_sec.m$name'::regclass;
    $assign;
    PERFORM recall.$put(r);
END
\$\$;
});
}

# Registrations whose wiped values do not fit their content columns,
# then a recall that wipes the copies.
foreach my $c ([ '5a', '{quoted}', 'NULL', 'NULL' ],
	[ '5b', '{quoted,extra,more}', q{'{NULL}'}, 'a short' ])
{
	my ($name, $content, $wiped, $what) = @$c;
	case_tables($name, $content);
	my $state = spoil($name, 'copies', "r.wiped_values := $wiped");
	ok(clean_refusal($state), "5: _copies_put with $what wiped_values is refused ($state)");
	no_crash(
		"5: a recall after _copies_put with $what wiped_values",
		sub {
			psql_as($node, $db, $ATTACKER,
				"UPDATE regress_sec.m$name SET recalled_at = now() WHERE id = 1");
		});
}

# an empty channel: the dispatcher must still notify everyone else
query_as(
	$node, $db, $OTHER, qq{
CREATE TABLE $OTHER.m5 (id int PRIMARY KEY, sender text, body text);
INSERT INTO $OTHER.m5 VALUES (1, current_user, 'c5-' || 'other');
SELECT recall.enable('$OTHER.m5', '{body}', sender => 'sender', channel => 'other_chan');
});
case_tables('5c', '{quoted}');
my $state = spoil('5c', 'tables', "r.channel := ''");
ok(clean_refusal($state), "5: _registry_put with an empty channel is refused ($state)");
no_crash(
	'5: recalls after _registry_put with an empty channel',
	sub {
		psql_as($node, $db, $ATTACKER,
			'UPDATE regress_sec.m5c SET recalled_at = now() WHERE id = 1');
		psql_as($node, $db, $OTHER, "UPDATE $OTHER.m5 SET recalled_at = now() WHERE id = 1");
	});
ok(notified('other_chan', "$OTHER.m5"),
	"5: another role's recall is still notified by the dispatcher");

# ---------------------------------------------------------------------------
# 6: a superuser's expression and partial indexes on recall.events

$node->safe_psql(
	$db, q{
CREATE EXTENSION amcheck;
CREATE INDEX events_expr ON recall.events ((pk ->> 'id'));
CREATE INDEX events_part ON recall.events (seq) WHERE privileged;
GRANT recall_admin TO regress_sec_other;
});
query_as(
	$node, $db, $ATTACKER, q{
CREATE TABLE regress_sec.m6 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m6 VALUES (6, current_user, 'c6-' || 'secret'), (7, 'someone', 'c6-' || 'other');
SELECT recall.enable('regress_sec.m6', '{body}', sender => 'sender');
GRANT SELECT, UPDATE ON regress_sec.m6 TO regress_sec_other;
});
no_crash(
	'6: recalls with an expression and a partial index on recall.events',
	sub {
		# a self recall (not privileged) and an admin's (privileged)
		psql_as($node, $db, $ATTACKER,
			'UPDATE regress_sec.m6 SET recalled_at = now() WHERE id = 6');
		psql_as($node, $db, $OTHER,
			"UPDATE regress_sec.m6 SET recalled_at = now(), recall_reason = 'spam' WHERE id = 7");
	});
is( $node->safe_psql(
		$db, 'SELECT string_agg((body IS NULL AND recalled_at IS NOT NULL)::text, \',\' ORDER BY id) FROM regress_sec.m6'),
	'true,true',
	'6: both recalls went through');
is($node->psql($db, "SELECT bt_index_check('recall.events_expr', true)"),
	0, '6: the expression index holds every row of recall.events (amcheck)');
# The case's events, and the privileged ones, counted with some plan
# types switched off.
sub event_counts
{
	my (@off) = @_;
	return $node->safe_psql($db,
		join('', map { "SET enable_$_ = off;\n" } @off) . q{
SELECT (SELECT count(*) FROM recall.events
        WHERE pk ->> 'id' IN ('6', '7') AND tbl = 'regress_sec.m6'::regclass)
       || ',' || (SELECT count(*) FROM recall.events WHERE privileged);
});
}
my $by_index = event_counts('seqscan', 'bitmapscan');
my $by_heap = event_counts('indexscan', 'bitmapscan');
is($by_heap, '2,1', '6: the two events are there, one privileged');
is($by_index, $by_heap,
	'6: read through the indexes, the same events (the partial index holds its predicate\'s rows only)');
like(
	$node->safe_psql(
		$db, q{
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM recall.events WHERE privileged;
}),
	qr/events_part/,
	'6: (the partial index is the one read)');
$node->safe_psql($db, 'DROP INDEX recall.events_expr, recall.events_part');

# ---------------------------------------------------------------------------
# Every SQL-callable function, with NULLs and odd values

$node->safe_psql(
	$db, q{
-- runs a call and rolls it back; 'ok' or the SQLSTATE of its error
CREATE FUNCTION public.regress_try(stmt text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RAISE EXCEPTION USING ERRCODE = 'PZ999';
EXCEPTION WHEN OTHERS THEN
    RETURN CASE SQLSTATE WHEN 'PZ999' THEN 'ok' ELSE SQLSTATE END;
END
$$;
});
query_as(
	$node, $db, $ATTACKER, q{
CREATE TABLE regress_sec.sweep (id int PRIMARY KEY, sender text, sent_at timestamptz,
                                conv text, body text);
CREATE TABLE regress_sec.sweep_copy (qid int PRIMARY KEY, ref int, quoted text);
CREATE INDEX ON regress_sec.sweep_copy (ref);
INSERT INTO regress_sec.sweep VALUES (1, current_user, now(), 'c', 'sweep-' || 'secret');
SELECT recall.enable('regress_sec.sweep', '{body}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conv', recall_window => '1 day');
SELECT recall.add_copy('regress_sec.sweep', 'regress_sec.sweep_copy', '{ref}', '{quoted}');
});

# normal value first, then the odd ones, per argument type
my $reg = q{'regress_sec.sweep'::regclass};
my %values = (
	regclass => [
		$reg, '0::oid::regclass', '4294967295::oid::regclass',
		q{'pg_catalog.pg_class'::regclass}, q{'recall.events'::regclass},
		q{'recall.tables'::regclass}, q{'regress_sec.sweep_copy'::regclass}
	],
	oid => [ "$reg\::oid", '0::oid', '4294967295::oid' ],
	text => [
		q{'x'::text}, q{''::text}, q{repeat('x', 100000)}, "'{'::text",
		q{'1:2:3'::text}, q{'-1:-1'::text},
		q{'18446744073709551615:9223372036854775807'::text}, q{'recall'::text},
		q{'data_directory'::text}, q{'statement'::text}, q{'wipe'::text}
	],
	name => [ q{'body'::name}, q{''::name}, q{repeat('n', 100)::name}, q{'recalled_at'::name} ],
	'name[]' => [
		q{'{body}'::name[]}, q{'{}'::name[]}, q{'{NULL}'::name[]}, q{'{""}'::name[]},
		q{array_fill('body'::name, ARRAY[1000])}, q{'{id}'::name[]}, q{'{body,body}'::name[]}
	],
	interval => [ q{'1 hour'::interval}, q{'-1 day'::interval}, q{'178000000 years'::interval} ],
	integer => [ '10', '-1', '0', '2147483647' ],
	bigint => [ '10::bigint', '-1::bigint', '9223372036854775807::bigint' ],
	boolean => [ 'true', 'false' ],
	'timestamp with time zone' => [ 'now()', q{'infinity'::timestamptz}, q{'-infinity'::timestamptz} ],
	jsonb => [
		q{'{"id": 1}'::jsonb}, q{'null'::jsonb}, q{'[]'::jsonb}, q{'{}'::jsonb}, q{'"x"'::jsonb},
		q{'{"id": null}'::jsonb}, q{'{"id": {"a": 1}}'::jsonb}, q{'{"id": "1e1000"}'::jsonb}
	],
	anyelement => [
		'1', 'NULL::int', q{'{}'::jsonb}, q{'x'::text}, q{'1.5'::numeric}, 'now()',
		'ROW(1, 2)', 'ARRAY[1]', q{'{"id": 1}'::jsonb}
	],
	'recall.tables' => [
		q{(SELECT t FROM recall.tables t WHERE t.tbl = 'regress_sec.sweep'::regclass)},
		q{jsonb_populate_record(NULL::recall.tables, '{}')}
	],
	'recall.copies' => [
		q{(SELECT c FROM recall.copies c WHERE c.tbl = 'regress_sec.sweep'::regclass)},
		q{jsonb_populate_record(NULL::recall.copies, '{}')}
	],);

my @functions = split /\n/, $node->safe_psql(
	$db, q{
SELECT p.proname || '|' || coalesce(array_to_string(p.proargtypes::regtype[], ';'), '')
FROM pg_proc p
WHERE p.pronamespace = 'recall'::regnamespace AND p.prokind = 'f'
ORDER BY p.proname, p.oid
});
ok(@functions > 0, 'the extension has SQL-callable functions (' . scalar(@functions) . ')');

my @calls;    # [ role, sql ]
my %seen;
foreach my $f (@functions)
{
	my ($name, $args) = split /\|/, $f, 2;
	my @types = $args eq '' ? () : split /;/, $args;
	my @nulls = map { "NULL::$_" } @types;
	my @normal = map { $values{$_} ? $values{$_}[0] : "NULL::$_" } @types;
	my @lists = ([@nulls], [@normal]);
	for my $i (0 .. $#types)
	{
		my $odd = $values{ $types[$i] } or next;
		for my $v (@$odd[ 1 .. $#$odd ])
		{
			my @a = @normal;
			$a[$i] = $v;
			push @lists, [@a];
		}
	}
	foreach my $l (@lists)
	{
		my $sql = "SELECT recall.$name(" . join(', ', @$l) . ')';
		next if $seen{$sql}++;
		push @calls, [ $ATTACKER, $sql ];
	}
	push @calls, [ 'superuser', "SELECT recall.$name(" . join(', ', @nulls) . ')' ];
}

# Run the calls, each rolled back, in one session per role; after a crash,
# note the call, wait for the server and go on with the next one.
my $su = $node->safe_psql($db, 'SELECT current_user');
my (@crashed, @internal);
my $i = 0;
while ($i < @calls)
{
	my $role = $calls[$i][0];
	my $j = $i;
	my $script = '';
	while ($j < @calls && $calls[$j][0] eq $role)
	{
		$script .= "SELECT $j || ' ' || public.regress_try(\$regress_call\$$calls[$j][1]\$regress_call\$);\n";
		$j++;
	}
	my $offset = -s $node->logfile;
	my $timed_out = 0;
	my ($ret, $out, $err) = psql_as($node, $db, $role eq 'superuser' ? $su : $role, $script,
		timeout => 10 * $WAIT, timed_out => \$timed_out);
	push @crashed, "$role: a call did not return within " . (10 * $WAIT) . ' s' if $timed_out;
	my %done;
	foreach my $line (split /\n/, $out)
	{
		my ($n, $st) = split / /, $line, 2;
		$done{$n} = 1;
		push @internal, "$calls[$n][0]: $calls[$n][1] -> $st" if $st =~ /^(XX|58)/;
	}
	my $next = $i;
	$next++ while $next < $j && $done{$next};
	if ($next < $j || crashes_in(log_since($node, $offset)))
	{
		push @crashed, "$calls[$next][0]: " . ($next < $j ? $calls[$next][1] : '(after the last call)');
		wait_ready($node);
		listen_again();
		$next++;
	}
	$i = $next;
}
note('calls made: ' . scalar(@calls));
is(join("\n", @crashed), '', 'no call of an extension function crashed the server');
is(join("\n", @internal), '', 'no call of an extension function raised an internal error (XX000)');

# ---------------------------------------------------------------------------
# after all that, a recall is still made and notified

query_as(
	$node, $db, $ATTACKER, q{
CREATE TABLE regress_sec.final (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.final VALUES (1, current_user, 'final-' || 'secret');
SELECT recall.enable('regress_sec.final', '{body}', sender => 'sender');
});
no_crash(
	'a last recall',
	sub {
		psql_as($node, $db, $ATTACKER,
			'UPDATE regress_sec.final SET recalled_at = now() WHERE id = 1');
	});
is($node->safe_psql($db, 'SELECT body IS NULL AND recalled_at IS NOT NULL FROM regress_sec.final'),
	't', 'a last recall is made');
listen_again();
query_as(
	$node, $db, $ATTACKER, q{
INSERT INTO regress_sec.final VALUES (2, current_user, 'final-' || 'secret');
UPDATE regress_sec.final SET recalled_at = now() WHERE id = 2;
});
ok(notified('recall', 'regress_sec.final'), 'a last recall is notified');
$listener->quit;

my @crashes = crashes_in(log_since($node, 0));
is(join("\n", @crashes), '', 'no server process crashed during the whole test');

$node->stop('immediate');
done_testing();
