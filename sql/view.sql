--
-- view: <table>_visible hides recalled rows, keeps the caller's own
-- privileges and row-level security, and plans like the table itself.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_view_alice;
DROP ROLE IF EXISTS regress_view_bob;
DROP ROLE IF EXISTS regress_view_outsider;
RESET client_min_messages;
CREATE ROLE regress_view_alice;
CREATE ROLE regress_view_bob;
CREATE ROLE regress_view_outsider;

CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id int NOT NULL,
    sender          text NOT NULL,
    body            text
);
CREATE INDEX messages_conversation_id ON messages (conversation_id, id);
INSERT INTO messages
SELECT i, 1 + i % 400,
       CASE WHEN i % 3 = 0 THEN 'regress_view_alice' ELSE 'regress_view_bob' END,
       'message ' || i
FROM generate_series(1, 40000) AS i;
-- readers of the table, granted before enable, may read the view too
GRANT SELECT ON messages TO regress_view_alice, regress_view_bob;
SELECT recall.enable('messages', '{body}', sender => 'sender', conversation => 'conversation_id');
SELECT has_table_privilege('regress_view_alice', 'messages_visible', 'SELECT') AS alice_reads_view,
       has_table_privilege('regress_view_outsider', 'messages_visible', 'SELECT') AS outsider_reads_view;

-- each sender recalls their own among the last three messages of
-- conversation 8
UPDATE messages SET recalled_at = now(), recalled_by = sender
WHERE id IN (SELECT id FROM messages WHERE conversation_id = 8 ORDER BY id DESC LIMIT 3);
ANALYZE messages;

------------------------------------------------------------------------
-- Recalled rows are hidden; the recall columns are not shown
------------------------------------------------------------------------
SELECT * FROM messages_visible WHERE conversation_id = 8 ORDER BY id DESC LIMIT 5;
SELECT id, body, recalled_by FROM messages WHERE conversation_id = 8 ORDER BY id DESC LIMIT 5;
SELECT attname FROM pg_attribute
WHERE attrelid = 'messages_visible'::regclass AND attnum > 0 ORDER BY attnum;
SELECT count(*) AS visible, (SELECT count(*) FROM messages) AS total FROM messages_visible;

------------------------------------------------------------------------
-- The caller's row-level security applies through the view
------------------------------------------------------------------------
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_messages ON messages FOR SELECT USING (sender = current_user);
SET ROLE regress_view_alice;
SELECT DISTINCT sender FROM messages_visible;
SELECT * FROM messages_visible WHERE conversation_id = 8 ORDER BY id DESC LIMIT 3;
SELECT count(*) FROM messages_visible;
RESET ROLE;
SET ROLE regress_view_bob;
SELECT * FROM messages_visible WHERE conversation_id = 8 ORDER BY id DESC LIMIT 3;
SELECT count(*) FROM messages_visible;
RESET ROLE;
-- a role that may read the view but not the table gets nothing: the view
-- runs with the caller's privileges
GRANT SELECT ON messages_visible TO regress_view_outsider;
SET ROLE regress_view_outsider;
SELECT count(*) FROM messages_visible;
\echo :SQLSTATE
RESET ROLE;
ALTER TABLE messages DISABLE ROW LEVEL SECURITY;

------------------------------------------------------------------------
-- Same plan as the table with recalled_at IS NULL: the view is flattened
-- and "latest 50 of a conversation" reads 50 index entries, no sort
------------------------------------------------------------------------
CREATE FUNCTION pg_temp.plan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END $$;

EXPLAIN (COSTS OFF)
SELECT * FROM messages_visible WHERE conversation_id = 8 ORDER BY id DESC LIMIT 50;
EXPLAIN (COSTS OFF)
SELECT id, conversation_id, sender, body FROM messages
WHERE conversation_id = 8 AND recalled_at IS NULL ORDER BY id DESC LIMIT 50;
SELECT pg_temp.plan('SELECT * FROM messages_visible WHERE conversation_id = 8 ORDER BY id DESC LIMIT 50')
     = pg_temp.plan('SELECT id, conversation_id, sender, body FROM messages WHERE conversation_id = 8 AND recalled_at IS NULL ORDER BY id DESC LIMIT 50')
       AS same_plan;

-- a lookup by key, and a join
SELECT pg_temp.plan('SELECT body FROM messages_visible WHERE id = 4242')
     = pg_temp.plan('SELECT body FROM messages WHERE id = 4242 AND recalled_at IS NULL')
       AS same_plan;
SELECT pg_temp.plan('SELECT c.c, m.id FROM generate_series(1, 3) AS c(c), LATERAL (SELECT id FROM messages_visible v WHERE v.conversation_id = c.c ORDER BY id DESC LIMIT 1) m')
     = pg_temp.plan('SELECT c.c, m.id FROM generate_series(1, 3) AS c(c), LATERAL (SELECT id FROM messages WHERE messages.conversation_id = c.c AND messages.recalled_at IS NULL ORDER BY id DESC LIMIT 1) m')
       AS same_plan;
-- and the same rows
SELECT c.c, m.id FROM generate_series(7, 9) AS c(c),
LATERAL (SELECT id FROM messages_visible v WHERE v.conversation_id = c.c ORDER BY id DESC LIMIT 1) m
ORDER BY c.c;

SET client_min_messages = warning;
DROP TABLE messages CASCADE;
RESET client_min_messages;
DROP ROLE regress_view_alice, regress_view_bob, regress_view_outsider;
