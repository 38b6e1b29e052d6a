# Copyright (c) pg_recall authors
#
# 041_fuzz.pl
#	  sqlsmith (Debian package sqlsmith) sends random queries, built from
#	  the catalog (every table, column, type, function and operator it can
#	  see, pg_recall's included), to a database with enabled tables (a
#	  plain one, a partitioned one, one with a composite key), registered
#	  copies and recall events: first as the tables' owner, a role without
#	  superuser, then as a superuser.  sqlsmith rolls each statement back.
#	  Afterwards:
#	  - no backend died (the server log has no "terminated by signal", no
#	    "server process ... was terminated", no "terminating any other
#	    active server processes") and the server answers;
#	  - the invariant still holds: every recalled row's content columns
#	    hold their wiped values, and every registered copy of a recalled
#	    message (still there, or deleted with its recall in recall.events)
#	    is wiped, or gone for a 'delete' copy.
#
#	  Environment:
#	    RECALL_FUZZ_QUERIES  queries per role (default 2000, about ten
#	                         seconds each; `make fuzz` runs 20000)
#	    RECALL_FUZZ_SEED     sqlsmith's seed (default 1, so that make test
#	                         sends the same queries each time; `make fuzz`
#	                         takes a new one each run)

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use SecurityKit;
use Test::More;
use Time::HiRes qw(time);

my $QUERIES = $ENV{RECALL_FUZZ_QUERIES} || 2000;
my $SEED    = $ENV{RECALL_FUZZ_SEED}    || 1;
note("sqlsmith: $QUERIES queries per role, seed $SEED");
my $ROLE    = 'regress_fuzz';

my $sqlsmith = `command -v sqlsmith 2>/dev/null`;
chomp $sqlsmith;
if ($sqlsmith eq '')
{
	fail('sqlsmith is installed (Debian package sqlsmith; scripts/setup.sh installs it)');
	done_testing();
	exit;
}

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'pg_recall'
restart_after_crash = on
# sqlsmith's statements are not worth a log line each
log_statement = none
log_min_error_statement = panic
});
$node->start;

$node->safe_psql(
	'postgres', qq{
CREATE DATABASE fuzz;
CREATE ROLE $ROLE LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION;
});
$node->safe_psql(
	'fuzz', qq{
CREATE EXTENSION pg_recall;
CREATE SCHEMA chat AUTHORIZATION $ROLE;
});
query_as(
	$node, 'fuzz', $ROLE, q{
-- a plain table, as chat servers have it
CREATE TABLE chat.messages (
    id            bigint PRIMARY KEY,
    conversation  int NOT NULL,
    sender        text NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT now(),
    body          text,
    html          text
);
INSERT INTO chat.messages
SELECT g, g % 7, CASE WHEN g % 2 = 0 THEN 'alice' ELSE 'bob' END,
       now() - g * interval '1 minute', 'message ' || g, '<p>message ' || g || '</p>'
FROM generate_series(1, 300) AS g;
SELECT recall.enable('chat.messages', '{body,html}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation', recall_window => '1 day');
-- a partitioned one
CREATE TABLE chat.parted (room int, id int, sender text, body text, PRIMARY KEY (room, id))
    PARTITION BY LIST (room);
CREATE TABLE chat.parted_1 PARTITION OF chat.parted FOR VALUES IN (1);
CREATE TABLE chat.parted_2 PARTITION OF chat.parted FOR VALUES IN (2);
CREATE TABLE chat.parted_other PARTITION OF chat.parted DEFAULT;
INSERT INTO chat.parted SELECT g % 4, g, 'alice', 'parted ' || g FROM generate_series(1, 200) AS g;
SELECT recall.enable('chat.parted', '{body}', sender => 'sender');
-- a composite key, a NOT NULL jsonb content column
CREATE TABLE chat.composite (a int, b text, sender text, doc jsonb NOT NULL DEFAULT '{}',
                             PRIMARY KEY (a, b));
INSERT INTO chat.composite SELECT g, 'k' || g, 'alice', jsonb_build_object('text', 'doc ' || g)
FROM generate_series(1, 100) AS g;
SELECT recall.enable('chat.composite', '{doc}', sender => 'sender');
-- copies: quotes and previews of messages, search rows of the composite table
CREATE TABLE chat.quotes (qid int PRIMARY KEY, ref bigint, quoted text);
CREATE INDEX ON chat.quotes (ref);
INSERT INTO chat.quotes SELECT g, g, 'message ' || g FROM generate_series(1, 300, 3) AS g;
CREATE TABLE chat.previews (conversation int PRIMARY KEY, last_id bigint, preview text);
CREATE INDEX ON chat.previews (last_id);
INSERT INTO chat.previews SELECT c, 294 + c, 'message ' || (294 + c) FROM generate_series(0, 6) AS c;
CREATE TABLE chat.search (a int, b text, words tsvector);
CREATE INDEX ON chat.search (a, b);
INSERT INTO chat.search SELECT g, 'k' || g, to_tsvector('simple', 'doc ' || g) FROM generate_series(1, 100) AS g;
SELECT recall.add_copy('chat.messages', 'chat.quotes', '{ref}', '{quoted}');
SELECT recall.add_copy('chat.messages', 'chat.previews', '{last_id}', '{preview}');
SELECT recall.add_copy('chat.composite', 'chat.search', '{a,b}', action => 'delete');
-- recalls (events), one of them deleted since
SET recall.actor_scope = 'session';
SET recall.actor = 'alice';
UPDATE chat.messages SET recalled_at = now() WHERE id IN (2, 4, 6, 296, 298);
UPDATE chat.parted SET recalled_at = now() WHERE id IN (1, 2, 3, 4);
UPDATE chat.composite SET recalled_at = now() WHERE a IN (1, 2);
DELETE FROM chat.messages WHERE id = 4;
});

# Violations of the invariant: recalled rows or copies of recalled
# messages that hold content (one line each; none expected).
$node->safe_psql(
	'fuzz', q{
CREATE FUNCTION public.fuzz_violations() RETURNS SETOF text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t       record;
    c       record;
    holds   text;
    keymatch text;
    evmatch text;
    n       bigint;
BEGIN
    FOR t IN SELECT * FROM recall.tables LOOP
        SELECT string_agg(CASE WHEN w IS NULL THEN format('x.%I IS NOT NULL', col)
                               ELSE format('x.%I::text IS DISTINCT FROM %L', col, w) END, ' OR ')
          INTO holds
        FROM unnest(t.content, t.wiped_values) AS u(col, w);
        EXECUTE format('SELECT count(*) FROM %s x WHERE x.recalled_at IS NOT NULL AND (%s)', t.tbl, holds)
            INTO n;
        IF n > 0 THEN
            RETURN NEXT format('%s: %s recalled rows hold content', t.tbl, n);
        END IF;
    END LOOP;
    FOR c IN SELECT x.*, r.key_columns FROM recall.copies x JOIN recall.tables r ON r.tbl = x.tbl LOOP
        SELECT string_agg(format('k.%I::text = x.%I::text', key, m), ' AND '),
               string_agg(format('e.pk ->> %L = x.%I::text', key, m), ' AND ')
          INTO keymatch, evmatch
        FROM unnest(c.key_columns, c.match) AS u(key, m);
        IF c.action = 'wipe' THEN
            SELECT string_agg(CASE WHEN w IS NULL THEN format('x.%I IS NOT NULL', col)
                                   ELSE format('x.%I::text IS DISTINCT FROM %L', col, w) END, ' OR ')
              INTO holds
            FROM unnest(c.content, c.wiped_values) AS u(col, w);
        ELSE
            holds := 'true';
        END IF;
        EXECUTE format('SELECT count(*) FROM %s x WHERE (%s) AND (EXISTS (SELECT FROM %s k'
                       ' WHERE k.recalled_at IS NOT NULL AND %s) OR EXISTS (SELECT FROM recall.events e'
                       ' WHERE e.tbl = %L::regclass AND %s))',
                       c.copy, holds, c.tbl, keymatch, c.tbl, evmatch)
            INTO n;
        IF n > 0 THEN
            RETURN NEXT format('%s (copy of %s): %s rows of recalled messages hold content', c.copy, c.tbl, n);
        END IF;
    END LOOP;
END
$$;
});
my $violations = "SELECT coalesce(string_agg(v, E'\\n'), '') FROM public.fuzz_violations() AS v";
is($node->safe_psql('fuzz', $violations), '', 'before fuzzing: the invariant holds');
is($node->safe_psql('fuzz', 'SELECT count(*) FROM recall.events'),
	'11', 'before fuzzing: the recalls left their events');

# Run sqlsmith as a role; returns its exit code, seconds taken, output.
sub sqlsmith_as
{
	my ($user) = @_;
	my $target = sprintf('host=%s port=%s dbname=fuzz user=%s', $node->host, $node->port, $user);
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $ok = eval {
		IPC::Run::run(
			[ $sqlsmith, "--target=$target", "--max-queries=$QUERIES", "--seed=$SEED", '--verbose' ],
			'<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(120 + $QUERIES / 5));
		1;
	};
	my $rc = $ok ? $? >> 8 : "timeout or failure: $@";
	return ($rc, time - $t0, $out . $err);
}

my $su = $node->safe_psql('postgres', 'SELECT current_user');
foreach my $user ($ROLE, $su)
{
	my $who = $user eq $ROLE ? 'the tables\' owner' : 'a superuser';
	my $offset = -s $node->logfile;
	my ($rc, $secs, $out) = sqlsmith_as($user);
	my ($count) = ($out =~ /^queries: (\d+)/mg)[-1];
	my ($rate) = ($out =~ /^error rate: ([0-9.]+)/mg)[-1];
	note(sprintf('sqlsmith as %s: %s queries in %.1f s, error rate %s, exit code %s',
			$user, $count // '?', $secs, $rate // '?', $rc));
	is($rc, 0, "sqlsmith as $who ran its $QUERIES queries to the end");
	my @crashes = crashes_in(log_since($node, $offset));
	is(join("\n", @crashes), '', "sqlsmith as $who: no backend died");
	my ($ret) = $node->psql('fuzz', 'SELECT 1');
	is($ret, 0, "sqlsmith as $who: the server still answers");
	wait_ready($node) if @crashes || $ret != 0;
	is($node->safe_psql('fuzz', $violations), '', "sqlsmith as $who: the invariant still holds");
}

is($node->safe_psql('fuzz', 'SELECT count(*) FROM recall.events'),
	'11', 'after fuzzing: the events are those of the recalls (sqlsmith rolls back)');

$node->stop;
done_testing();
