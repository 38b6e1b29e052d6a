-- pg_recall bench: enable recall on the copy in database "enabled".
\set ON_ERROR_STOP 1
SELECT recall.enable('messages', '{body,attachment}',
                     sender => 'sender', sent_at => 'created_at',
                     conversation => 'conversation');
VACUUM ANALYZE messages;
