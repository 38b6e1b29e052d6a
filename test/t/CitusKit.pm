# Copyright (c) pg_recall authors
#
# CitusKit.pm
#	  Citus clusters for the TAP tests (070, 071): nodes on loopback with
#	  shared_preload_libraries = 'citus,pg_recall', a coordinator and two
#	  workers with pg_recall installed, and the skip when Citus is not
#	  installed for the server under test (no citus.so in pg_config
#	  --pkglibdir).

package CitusKit;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT = qw(citus_skip_unless_installed citus_node citus_cluster);

# Skip the whole test file unless Citus is installed for this server.
sub citus_skip_unless_installed
{
	my $pg_config = $ENV{PG_CONFIG} || 'pg_config';
	my $pkglibdir = `$pg_config --pkglibdir`;
	chomp $pkglibdir;
	plan skip_all => "Citus is not installed for this server (no $pkglibdir/citus.so)"
	  unless $pkglibdir ne '' && -f "$pkglibdir/citus.so";
	return;
}

# A started node with both libraries preloaded, listening on loopback,
# with the citus extension; $conf is appended to postgresql.conf.
sub citus_node
{
	my ($name, $conf) = @_;
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init(allows_streaming => 'logical');
	$n->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'citus,pg_recall'
listen_addresses = '127.0.0.1'
max_prepared_transactions = 20
max_worker_processes = 24
max_replication_slots = 10
max_wal_senders = 10
citus.local_hostname = '127.0.0.1'
} . ($conf // ''));
	$n->start;
	$n->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $n;
}

# A coordinator and two workers (each node's postgresql.conf gets $conf),
# the workers added, pg_recall created on the coordinator (Citus creates
# it on the workers).  Returns (coordinator, worker1, worker2).
sub citus_cluster
{
	my ($conf) = @_;
	my @n = map { citus_node($_, $conf) } ('coordinator', 'worker1', 'worker2');
	$n[0]->safe_psql(
		'postgres', sprintf(q{
SELECT citus_set_coordinator_host('127.0.0.1', %d);
SELECT citus_add_node('127.0.0.1', %d);
SELECT citus_add_node('127.0.0.1', %d);
CREATE EXTENSION pg_recall;
}, map { $_->port } @n));
	return @n;
}

1;
