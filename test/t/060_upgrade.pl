# Copyright (c) pg_recall authors
#
# 060_upgrade.pl
#	  ALTER EXTENSION pg_recall UPDATE from 1.0 to 1.1 on a database that
#	  holds enabled tables (plain and partitioned), recalled messages,
#	  events and registered copies, with the dispatcher preloaded and the
#	  relay following the log:
#	  - before: the 1.0 objects (three triggers, a CHECK) work with this
#	    library until the update;
#	  - the update converts every enabled table (one ALWAYS trigger, no
#	    CHECK), keeps its settings, events and copies, and makes none of
#	    the user's objects an extension member;
#	  - after: recalls, copies, events_after() with a cursor taken before
#	    the update, the dispatcher's notifications and the relay all go on.

use strict;
use warnings;

use IPC::Run;
use JSON::PP qw(decode_json);
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $WAIT = 30;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_recall'\n");
$node->start;

my $dir   = PostgreSQL::Test::Utils::tempdir;
my $out   = "$dir/relay.out";
my $state = "$dir/relay.state";

# --- a 1.0 database --------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE EXTENSION pg_recall VERSION '1.0';
CREATE TABLE messages (id bigint PRIMARY KEY, conversation int, sender text,
                       sent_at timestamptz DEFAULT now(), body text, reply_to bigint,
                       quoted text);
CREATE INDEX ON messages (reply_to);
SELECT recall.enable('messages', '{body}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation');
INSERT INTO messages (id, conversation, sender, body, reply_to, quoted)
  SELECT g, g % 3, 'alice', 'secret ' || g,
         CASE WHEN g % 2 = 0 THEN g - 1 END,
         CASE WHEN g % 2 = 0 THEN 'quote of ' || (g - 1) END
  FROM generate_series(1, 40) g;
SELECT recall.add_copy('messages', 'messages', '{reply_to}', '{quoted}');
CREATE TABLE parted (room int, id int, sender text, body text,
                     PRIMARY KEY (room, id)) PARTITION BY LIST (room);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
SELECT recall.enable('parted', '{body}', sender => 'sender');
INSERT INTO parted SELECT 1 + g % 2, g, 'alice', 'parted secret ' || g
  FROM generate_series(1, 10) g;
});
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'pg_recall'"),
	'1.0', 'the database runs 1.0');
is($node->safe_psql('postgres',
		q{SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
		  WHERE tgrelid = 'messages'::regclass AND tgname LIKE '~recall%'}),
	'~recall_copy_guard,~recall_event,~recall_guard,~recall_notify',
	'1.0 put three triggers (and the copy guard) on the table');

# recalls under 1.0's objects, with this library
$node->safe_psql('postgres', q{
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET recalled_at = now() WHERE id IN (1, 3);
UPDATE parted SET recalled_at = now() WHERE id = 2;
COMMIT;
});
is($node->safe_psql('postgres',
		"SELECT count(*) FROM recall.events"), '3', '1.0: three events');
is($node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM messages WHERE quoted IS NULL AND reply_to IS NOT NULL"),
	'2,4', '1.0: the quotes of 1 and 3 are wiped');
my $cursor = $node->safe_psql('postgres',
	"SELECT cursor FROM recall.events_after(NULL) ORDER BY cursor DESC LIMIT 1");
ok($cursor =~ /^\d+:\d+$/, "a cursor before the update: $cursor");

# the relay follows the log from the start
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0)
{
	delete $ENV{PGAPPNAME};
	open(STDIN,  '<',  '/dev/null') or POSIX::_exit(126);
	open(STDOUT, '>>', $out) or POSIX::_exit(126);
	open(STDERR, '>>', "$dir/relay.err") or POSIX::_exit(126);
	exec('pg_recall_relay', '-d', $node->connstr('postgres'), '--state', $state,
		'--from', 'oldest')
	  or POSIX::_exit(127);
}

sub printed_seqs
{
	return [] unless -e $out;
	my @seqs;
	for my $line (split /\n/, slurp_file($out))
	{
		my $ev = eval { decode_json($line) };
		push @seqs, $ev->{seq} if ref $ev eq 'HASH';
	}
	return [ sort { $a <=> $b } @seqs ];
}

sub wait_printed
{
	my ($n) = @_;
	my $deadline = time + $WAIT;
	while (time < $deadline)
	{
		return 1 if @{ printed_seqs() } >= $n;
		usleep(100_000);
	}
	return 0;
}
ok(wait_printed(3), 'the relay printed the three 1.0 events');

# --- the update --------------------------------------------------------------
$node->safe_psql('postgres', 'ALTER EXTENSION pg_recall UPDATE');
is($node->safe_psql('postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'pg_recall'"),
	'1.1', 'ALTER EXTENSION UPDATE reaches 1.1');
is($node->safe_psql('postgres',
		q{SELECT string_agg(c.relname || ' ' || t.tgname || ' ' || t.tgenabled::text, ',' ORDER BY c.relname, t.tgname)
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		  WHERE t.tgname LIKE '~recall%'}),
	'messages ~recall_copy_guard O,messages ~recall_guard A,parted ~recall_guard A,'
	  . 'parted_1 ~recall_guard A,parted_2 ~recall_guard A',
	'one guard per table and partition, firing always, and the copy guard');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_constraint WHERE conname = 'recall_wiped'"),
	'0', 'no CHECK constraint left');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_recall')
  AND (d.classid = 'pg_trigger'::regclass
       OR (d.classid = 'pg_class'::regclass
           AND d.objid IN ('messages'::regclass, 'parted'::regclass,
                           'messages_visible'::regclass)))}),
	'0', 'the user\'s triggers, tables and views are not extension members');
is($node->safe_psql('postgres',
		"SELECT string_agg(tbl::text || ' ' || array_to_string(content, ','), ';' ORDER BY tbl::text) FROM recall.tables"),
	'messages body;parted body', 'the registry kept its settings');
is($node->safe_psql('postgres', "SELECT count(*) FROM recall.events"),
	'3', 'the events are kept');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM recall.events WHERE key_hash IS NOT NULL"),
	'2', 'events of the table with copies got their key hash');

# --- after -------------------------------------------------------------------
my ($stdout, $stderr) = ('', '');
my $listen = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \my $listen_in, '>', \$stdout, '2>', \$stderr);
$listen_in = "LISTEN recall;\n";
$listen->pump while length $listen_in;
usleep(200_000);

$node->safe_psql('postgres', q{
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE messages SET recalled_at = now() WHERE id = 5;
COMMIT;
BEGIN;
SET LOCAL recall.actor = 'alice';
UPDATE parted SET recalled_at = now() WHERE id IN (4, 5);
COMMIT;
});
is($node->safe_psql('postgres',
		"SELECT body IS NULL AND recalled_at IS NOT NULL FROM messages WHERE id = 5"),
	't', '1.1: a recall wipes the content');
is($node->safe_psql('postgres',
		"SELECT quoted IS NULL FROM messages WHERE id = 6"),
	't', '1.1: and its quote');
is($node->safe_psql('postgres',
		"SELECT residue IS NOT NULL FROM recall.events WHERE pk = '{\"id\": 5}'"),
	't', '1.1: the event records the residue');
is($node->safe_psql('postgres',
		"SELECT string_agg(pk::text, ';' ORDER BY seq) FROM recall.events_after('$cursor')"),
	'{"id": 5};{"id": 4, "room": 1};{"id": 5, "room": 2}',
	'events_after() with a cursor taken before the update returns the new events');

# the dispatcher notifies the recalls made after the update
my $deadline = time + $WAIT;
while (time < $deadline && scalar(() = $stdout =~ /Asynchronous notification/g) < 2)
{
	$listen_in .= "SELECT 1;\n";
	$listen->pump while length $listen_in;
	usleep(100_000);
}
my @notes = grep { /recall/ } split /\n/, $stdout;
ok(scalar(grep { /"op":"recall"/ && /"id":5/ } @notes),
	'the dispatcher notified the single recall');
ok(scalar(grep { /"op":"recall_bulk"/ && /"count":2/ } @notes),
	'and the bulk recall of the partitioned table');
$listen_in .= "\\q\n";
$listen->finish;

ok(wait_printed(6), 'the relay printed the events after the update too');
is(join(',', @{ printed_seqs() }),
	$node->safe_psql('postgres', "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM recall.events"),
	'the relay printed every event exactly once');

kill 'TERM', $pid;
waitpid($pid, 0);

# a 1.0-era table can be disabled and enabled again
$node->safe_psql('postgres', q{
SELECT recall.disable('parted');
SELECT recall.enable('parted', '{body}', sender => 'sender');
});
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_trigger WHERE tgrelid = 'parted'::regclass AND tgname = '~recall_guard'}),
	'1', 'disable and enable again after the update');

$node->stop;
done_testing();
