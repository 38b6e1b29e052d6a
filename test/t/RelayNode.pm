# Copyright (c) pg_recall authors
#
# RelayNode.pm
#	  The cluster the relay's TAP tests run against: pg_recall preloaded
#	  (the dispatcher sends the notifications), the extension created, and
#	  a table "messages" enabled for recall (content body, sender,
#	  sent_at, conversation) holding messages 1..rows from 'alice'.
#
#	  relay_node($name, %options) returns the started node.  Options:
#	    rows          messages inserted (default 0)
#	    conversation  SQL expression of g, the message id, giving its
#	                  conversation (default 'g % 5')
#	    init          hash of options for init() (e.g. allows_streaming)
#	    conf          more postgresql.conf lines

package RelayNode;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Cluster;

our @EXPORT_OK = qw(relay_node);

sub relay_node
{
	my ($name, %o) = @_;
	my $rows = $o{rows} // 0;
	my $conversation = $o{conversation} // 'g % 5';

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $o{init} // {} });
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pg_recall'\n" . ($o{conf} // ''));
	$node->start;
	$node->safe_psql(
		'postgres', qq{
CREATE EXTENSION pg_recall;
CREATE TABLE messages (id bigint PRIMARY KEY, conversation bigint,
                       sender text, sent_at timestamptz DEFAULT now(), body text);
SELECT recall.enable('messages', '{body}', sender => 'sender',
                     sent_at => 'sent_at', conversation => 'conversation');
INSERT INTO messages (id, conversation, sender, body)
  SELECT g, $conversation, 'alice', 'secret ' || g FROM generate_series(1, $rows) g;
});
	return $node;
}

1;
