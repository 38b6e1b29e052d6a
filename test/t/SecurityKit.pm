# Copyright (c) pg_recall authors
#
# SecurityKit.pm
#	  Helpers of the adversarial TAP tests (04x): the attacker's kit (its
#	  role, schema, payload and shadows, the same as the pg_regress suites
#	  sql/security*.sql use), psql as a given role with SQLSTATEs, polling,
#	  and the server log's crash records.

package SecurityKit;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(psql_as sqlstate_of query_as attacker_kit wait_until
  log_since lines_with crashes_in wait_ready payloads_not_as_attacker
  $ATTACKER $WAIT);

# The attacker: any role that may create a table.
our $ATTACKER = 'regress_sec_attacker';

# Bound of every wait, in seconds.
our $WAIT = 30;

# The top of the tree (the shared .psql files live in test/).
my $TOP = $ENV{TESTDIR} // '.';

# psql as a given user; returns (exit code, stdout, stderr), with verbose
# errors so that stderr carries the SQLSTATE ("ERROR:  42501: ...").
sub psql_as
{
	my ($node, $db, $user, $sql, %opts) = @_;
	my ($out, $err) = ('', '');
	my $ret = $node->psql(
		$db, "\\set VERBOSITY verbose\n$sql",
		connstr => $node->connstr($db) . " user=$user",
		stdout => \$out,
		stderr => \$err,
		%opts);
	return ($ret, $out, $err);
}

# SQLSTATE of the first error $sql raises, 'ok' when none.
sub sqlstate_of
{
	my ($node, $db, $user, $sql) = @_;
	my ($ret, $out, $err) = psql_as($node, $db, $user, $sql);
	return $1 if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return $ret == 0 ? 'ok' : "psql exit $ret: $err";
}

# stdout of $sql as a given user; dies on error.
sub query_as
{
	my ($node, $db, $user, $sql) = @_;
	my ($ret, $out, $err) = psql_as($node, $db, $user, $sql);
	die "query as $user failed: $sql\n$err" if $ret != 0;
	return $out;
}

# Create the attacker's role (once per cluster) and, in $db, its schema
# regress_sec with the payload, the log table regress_sec.ran and the
# shadows of pg_catalog's operators (test/security_payload.psql and
# test/security_shadow.psql, run by the attacker itself).
sub attacker_kit
{
	my ($node, $db) = @_;
	$node->safe_psql(
		$db, qq{
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ATTACKER') THEN
        CREATE ROLE $ATTACKER LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION;
    END IF;
END
\$\$;
CREATE SCHEMA regress_sec AUTHORIZATION $ATTACKER;
GRANT USAGE ON SCHEMA regress_sec TO PUBLIC;
});
	foreach my $f ('security_payload.psql', 'security_shadow.psql')
	{
		my ($ret, $out, $err) = psql_as($node, $db, $ATTACKER,
			"\\set ON_ERROR_STOP 1\n\\i $TOP/test/$f");
		die "attacker kit: $f failed in $db: $err" if $ret != 0;
	}
	return;
}

# Poll a query (as the superuser, search_path pinned) until it returns
# $expected (default 't'), at most $secs (default $WAIT) seconds.
sub wait_until
{
	my ($node, $db, $query, $expected, $secs) = @_;
	$expected = 't' unless defined $expected;
	my $deadline = time + ($secs // $WAIT);
	my $out = '';
	while (time < $deadline)
	{
		my ($rc, $stdout, $stderr) = $node->psql($db,
			"SET search_path = pg_catalog, pg_temp; $query",
			timeout => $WAIT);
		$out = $stdout // '';
		return 1 if defined $rc && $rc == 0 && $out eq $expected;
		usleep(200_000);
	}
	diag "timed out: $query\nexpected: $expected\nlast output: $out";
	return 0;
}

# The server log from byte $offset on.
sub log_since
{
	my ($node, $offset) = @_;
	return slurp_file($node->logfile, $offset);
}

# The lines of $text that contain $needle, joined ('' when none): what a
# test shows when content leaked, rather than the whole log.
sub lines_with
{
	my ($text, $needle) = @_;
	return join("\n", grep { index($_, $needle) >= 0 } split /\n/, $text // '');
}

# The crash records of a piece of server log: a backend or worker that
# died of a signal, or the postmaster's "terminating any other active
# server processes".
sub crashes_in
{
	my ($log) = @_;
	my @lines = grep {
		/terminated by signal/
		  || /server process .* was terminated/
		  || /terminating any other active server processes/
	} split /\n/, $log;
	return @lines;
}

# Wait until the server accepts connections again (after a crash).
sub wait_ready
{
	my ($node) = @_;
	my $deadline = time + 2 * $WAIT;
	while (time < $deadline)
	{
		my ($rc) = $node->psql('postgres', 'SELECT 1', timeout => $WAIT);
		return 1 if defined $rc && $rc == 0;
		usleep(300_000);
	}
	return 0;
}

# The payload runs recorded in $db (regress_sec.ran) whose tag matches the
# LIKE pattern and that ran as anyone but the attacker, or made it a
# superuser; as "tag: current_user" lines.
sub payloads_not_as_attacker
{
	my ($node, $db, $pattern) = @_;
	return $node->safe_psql(
		$db, qq{
SET search_path = pg_catalog, pg_temp;
SELECT string_agg(DISTINCT r.tag OPERATOR(pg_catalog.||) ': '
                  OPERATOR(pg_catalog.||) r.cur::text, ', ')
FROM regress_sec.ran r
WHERE r.tag OPERATOR(pg_catalog.~~) '$pattern'
  AND (r.cur OPERATOR(pg_catalog.<>) '$ATTACKER' OR r.became_superuser)});
}

1;
