# Copyright (c) pg_recall authors
#
# 002_refusal_log.pl
#	  A refused recall is written to the server log at LOG level, because its
#	  transaction rolls back and leaves no other trace: even when the client
#	  catches the error in a PL/pgSQL EXCEPTION block (so no ERROR line is
#	  logged), the LOG entry is there.  The log never holds message content.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('refusals');
$node->init;
# Cluster.pm logs every statement; keep that (a statement's text is no
# content), but make sure nothing filters LOG entries away.
$node->append_conf('postgresql.conf', "log_min_messages = warning\n");
$node->start;

# The content marker.  It never appears in any SQL text sent to the server
# (the test builds it server-side by concatenation), so log_statement = all
# cannot put it in the log: only pg_recall could.
my $marker_sql = q{'MARK' || 'ER-' || 'c0nt3nt' || '-' || 'x9q'};
my $marker     = 'MARKER-c0nt3nt-x9q';

$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION pg_recall;
CREATE ROLE alice LOGIN;
CREATE ROLE bob LOGIN;
CREATE ROLE mallory LOGIN;
CREATE ROLE moderator LOGIN IN ROLE recall_admin;

-- statement source, with a window
CREATE TABLE messages (
    id           bigint PRIMARY KEY,
    conversation bigint NOT NULL,
    sender       text NOT NULL,
    created_at   timestamptz NOT NULL,
    body         text,
    attachment   text
);
-- role source
CREATE TABLE by_role (
    id     integer PRIMARY KEY,
    sender text NOT NULL,
    body   text
);
-- setting source with a JSON claim
CREATE TABLE claimed (
    id     integer PRIMARY KEY,
    sender text NOT NULL,
    body   text
);
-- setting source, plain setting
CREATE TABLE set_plain (
    id     integer PRIMARY KEY,
    sender text NOT NULL,
    body   text
);
GRANT SELECT, UPDATE ON messages, by_role, claimed, set_plain TO alice, bob, mallory, moderator;

SELECT recall.enable('messages', '{body,attachment}', sender => 'sender',
                     sent_at => 'created_at', conversation => 'conversation',
                     recall_window => '1 hour');
SELECT recall.enable('by_role', '{body}', sender => 'sender', actor_source => 'role');
SELECT recall.enable('claimed', '{body}', sender => 'sender', actor_source => 'setting',
                     actor_setting => 'request.jwt.claims', actor_claim => 'sub');
SELECT recall.enable('set_plain', '{body}', sender => 'sender', actor_source => 'setting',
                     actor_setting => 'app.uid');

INSERT INTO messages VALUES
    (1, 7, 'alice', now(),                    $marker_sql || ' one', $marker_sql || ' att'),
    (2, 7, 'alice', now() - interval '2 hours', $marker_sql || ' two', NULL),
    (3, 7, 'bob',   now(),                    $marker_sql || ' three', NULL);
INSERT INTO by_role VALUES (1, 'alice', $marker_sql || ' role');
INSERT INTO claimed VALUES (1, 'alice', $marker_sql || ' claimed');
INSERT INTO set_plain VALUES (1, 'alice', $marker_sql || ' plain');
});

is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM (
		     SELECT body FROM messages UNION ALL SELECT body FROM by_role
		     UNION ALL SELECT body FROM claimed UNION ALL SELECT body FROM set_plain) s
		   WHERE body LIKE $marker_sql || '%'}),
	'6',
	'the marker is in the content');

# Runs $stmt as $user inside a DO block that catches insufficient_privilege
# (what the client of a refused recall would do).  $setup runs first in the
# same session (SET ...).  Returns the log written meanwhile.
sub refused_caught
{
	my ($name, $user, $setup, $stmt) = @_;

	my $offset = -s $node->logfile;
	my ($out, $err) = ('', '');
	my $ret = $node->psql(
		'postgres', qq{$setup
DO \$do\$
BEGIN
    $stmt;
    RAISE NOTICE 'outcome: allowed';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'outcome: refused %', SQLSTATE;
END
\$do\$;
},
		connstr => $node->connstr('postgres') . " user=$user",
		stdout => \$out,
		stderr => \$err);
	is($ret, 0, "$name: the client caught the error");
	like($err, qr/outcome: refused 42501/, "$name: refused with 42501");

	# the LOG entry is written before the ERROR is raised; wait briefly
	# for the bytes to reach the file anyway
	my $log = '';
	foreach my $i (1 .. 50)
	{
		$log = slurp_file($node->logfile, $offset);
		last if refusal_lines($log) ne '';
		select(undef, undef, undef, 0.1);
	}
	return $log;
}

# The log entries of a chunk that pg_recall wrote: LOG entries other than
# statement logging and connection chatter, with their DETAIL/HINT lines.
sub refusal_lines
{
	my ($log) = @_;
	my @out;
	my $in_entry = 0;
	foreach my $line (split /\n/, $log)
	{
		if ($line =~ /^\S.*?\b(LOG|ERROR|WARNING|NOTICE|DETAIL|HINT|CONTEXT|STATEMENT):  (.*)$/)
		{
			my ($level, $msg) = ($1, $2);
			if ($level eq 'LOG')
			{
				$in_entry =
				  $msg !~ /^(statement|connection|disconnection|duration|checkpoint):/;
			}
			elsif ($level =~ /^(DETAIL|HINT|CONTEXT)$/)
			{
				# belongs to the entry before it
			}
			else
			{
				$in_entry = 0;
			}
			push @out, $line if $in_entry;
		}
		elsif ($in_entry && $line =~ /^\s/)
		{
			push @out, $line;    # continuation line
		}
	}
	return join("\n", @out);
}

# Checks that one refusal was logged at LOG level, with the given patterns
# somewhere in its entry, and that no ERROR line was logged for it.
sub check_logged
{
	my ($name, $log, @patterns) = @_;
	my $entry = refusal_lines($log);
	like($entry, qr/^\S.*\bLOG:  .*recall/mi, "$name: logged at LOG level");
	foreach my $p (@patterns)
	{
		like($entry, $p, "$name: log entry matches $p");
	}
	unlike($log, qr/\bERROR:  /, "$name: no ERROR line (the client caught it)");
	unlike($log, qr/\Q$marker\E/, "$name: no content in the log");
	note("$name log entry:\n$entry");
}

my $log;

# 1. not the sender (statement source, actor from recall.actor)
$log = refused_caught('not the sender', 'bob', '',
	q{PERFORM set_config('recall.actor', 'bob', true);
    UPDATE messages SET recalled_at = now() WHERE id = 1});
check_logged('not the sender', $log, qr/\bbob\b/, qr/sender/i);

# 1b. same through recall.recall()
$log = refused_caught('not the sender, recall.recall', 'bob', '',
	q{PERFORM recall.recall('messages'::regclass, 1)});
check_logged('not the sender, recall.recall', $log, qr/\bbob\b/, qr/sender/i);

# 2. window elapsed: alice's own message, sent two hours ago, window one hour
$log = refused_caught('window elapsed', 'alice', '',
	q{UPDATE messages SET recalled_at = now() WHERE id = 2});
check_logged('window elapsed', $log, qr/\balice\b/, qr/window/i);

# 3. admin without a reason
$log = refused_caught('admin without reason', 'moderator', '',
	q{PERFORM recall.recall('messages'::regclass, 3)});
check_logged('admin without reason', $log, qr/\bmoderator\b/, qr/reason/i);

# 3b. admin with an empty reason setting
$log = refused_caught('admin with empty reason', 'moderator',
	q{SET recall.reason = '';},
	q{UPDATE messages SET recalled_at = now() WHERE id = 3});
check_logged('admin with empty reason', $log, qr/\bmoderator\b/, qr/reason/i);

# 4. impersonation under 'role', through each channel
$log = refused_caught('role: impersonation by recalled_by', 'mallory', '',
	q{UPDATE by_role SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1});
check_logged('role: impersonation by recalled_by', $log, qr/\bmallory\b/, qr/\balice\b/);

$log = refused_caught('role: impersonation by recall.actor', 'mallory',
	q{SET recall.actor = 'alice';},
	q{UPDATE by_role SET recalled_at = now() WHERE id = 1});
check_logged('role: impersonation by recall.actor', $log, qr/\bmallory\b/, qr/\balice\b/);

$log = refused_caught('role: impersonation by recall() actor', 'mallory', '',
	q{PERFORM recall.recall('by_role'::regclass, 1, actor => 'alice')});
check_logged('role: impersonation by recall() actor', $log, qr/\bmallory\b/, qr/\balice\b/);

# 5. impersonation under 'setting'
$log = refused_caught('setting: impersonation by recalled_by', 'mallory',
	q{SET request.jwt.claims = '{"sub": "mallory", "role": "authenticated"}';},
	q{UPDATE claimed SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1});
check_logged('setting: impersonation by recalled_by', $log, qr/\bmallory\b/, qr/\balice\b/);

$log = refused_caught('setting: impersonation by recall.actor', 'mallory',
	q{SET request.jwt.claims = '{"sub": "mallory"}'; SET recall.actor = 'alice';},
	q{PERFORM recall.recall('claimed'::regclass, 1)});
check_logged('setting: impersonation by recall.actor', $log, qr/\bmallory\b/, qr/\balice\b/);

$log = refused_caught('plain setting: impersonation by recall() actor', 'mallory',
	q{SET app.uid = 'mallory';},
	q{PERFORM recall.recall('set_plain'::regclass, 1, actor => 'alice')});
check_logged('plain setting: impersonation by recall() actor', $log, qr/\bmallory\b/,
	qr/\balice\b/);

# 6. missing identity: setting never set in the session, no claim, empty
#    claim, a setting that is not a JSON object, an empty plain setting
$log = refused_caught('setting: never set', 'alice', '',
	q{UPDATE claimed SET recalled_at = now() WHERE id = 1});
check_logged('setting: never set', $log, qr/request\.jwt\.claims|identity|actor/i);

$log = refused_caught('setting: claim missing', 'alice',
	q{SET request.jwt.claims = '{"role": "authenticated"}';},
	q{UPDATE claimed SET recalled_at = now() WHERE id = 1});
check_logged('setting: claim missing', $log, qr/request\.jwt\.claims|identity|actor|sub/i);

$log = refused_caught('setting: empty claim', 'alice',
	q{SET request.jwt.claims = '{"sub": ""}';},
	q{PERFORM recall.recall('claimed'::regclass, 1)});
check_logged('setting: empty claim', $log, qr/request\.jwt\.claims|identity|actor|sub/i);

$log = refused_caught('setting: not JSON', 'alice',
	q{SET request.jwt.claims = 'sub=alice';},
	q{UPDATE claimed SET recalled_at = now() WHERE id = 1});
check_logged('setting: not JSON', $log, qr/request\.jwt\.claims|identity|actor|JSON/i);

$log = refused_caught('setting: JSON but not an object', 'alice',
	q{SET request.jwt.claims = '["alice"]';},
	q{UPDATE claimed SET recalled_at = now() WHERE id = 1});
check_logged('setting: JSON but not an object', $log,
	qr/request\.jwt\.claims|identity|actor|JSON/i);

$log = refused_caught('plain setting: empty', 'alice', q{SET app.uid = '';},
	q{UPDATE set_plain SET recalled_at = now() WHERE id = 1});
check_logged('plain setting: empty', $log, qr/app\.uid|identity|actor/i);

# nothing refused changed anything
is( $node->safe_psql(
		'postgres',
		qq{SELECT count(*) FROM (
		     SELECT body, recalled_at FROM messages UNION ALL SELECT body, recalled_at FROM by_role
		     UNION ALL SELECT body, recalled_at FROM claimed
		     UNION ALL SELECT body, recalled_at FROM set_plain) s
		   WHERE body LIKE $marker_sql || '%' AND recalled_at IS NULL}),
	'6',
	'refused recalls changed nothing');
is($node->safe_psql('postgres', 'SELECT count(*) FROM recall.events'),
	'0', 'refused recalls wrote no event');

# An uncaught refusal: the LOG entry and the client's ERROR (with its
# STATEMENT) are both logged, and still no content.
my $offset = -s $node->logfile;
my ($ret, $out, $err) = $node->psql(
	'postgres',
	"\\set VERBOSITY verbose\nUPDATE messages SET recalled_at = now() WHERE id = 3",
	connstr => $node->connstr('postgres') . ' user=alice');
like($err, qr/ERROR:\s+42501:/, 'uncaught refusal: 42501');
unlike($err, qr/\Q$marker\E/, 'uncaught refusal: no content in the client error');
$log = slurp_file($node->logfile, $offset);
like(refusal_lines($log), qr/\bLOG:  .*recall/i, 'uncaught refusal: LOG entry');
like($log, qr/\bERROR:  /, 'uncaught refusal: the ERROR is logged too');
unlike($log, qr/\Q$marker\E/, 'uncaught refusal: no content in the log');

# Permitted recalls log no content either.
$node->safe_psql(
	'postgres', q{
BEGIN;
SET LOCAL recall.actor = 'alice';
SELECT recall.recall('messages'::regclass, 1);
SET ROLE alice;
UPDATE by_role SET recalled_at = now() WHERE id = 1;
RESET ROLE;
SET request.jwt.claims = '{"sub": "alice"}';
UPDATE claimed SET recalled_at = now() WHERE id = 1;
SET app.uid = 'alice';
SELECT recall.recall('set_plain'::regclass, 1);
COMMIT;
});
is( $node->safe_psql(
		'postgres',
		q{SELECT string_agg(tbl::text || ':' || actor, ',' ORDER BY seq) FROM recall.events}),
	'messages:alice,by_role:alice,claimed:alice,set_plain:alice',
	'permitted recalls wrote their events');

# The whole log, from the server's start: never the content.
$node->stop;
my $whole = slurp_file($node->logfile);
unlike($whole, qr/\Q$marker\E/, 'the server log never holds message content');
# the same, for a fragment of the marker longer than any word of the SQL
unlike($whole, qr/c0nt3nt-x9q/, 'not even part of the content');

done_testing();
