--
-- copies: the text of a recalled message also lives in other rows (a
-- conversation's preview, a quote, a search side table, a body side table,
-- the earlier versions of an edited post).  Registered with
-- recall.add_copy(), they are wiped or deleted in the recall's own
-- statement, whoever recalls, and a guard keeps a later write from bringing
-- the text back.
--
-- Every text that must disappear carries the marker "xyzzy"; the other
-- texts do not.  At the end no column of any row of the schema holds it.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

SET client_min_messages = warning;
DROP SCHEMA IF EXISTS copies CASCADE;
DROP ROLE IF EXISTS regress_copies_owner;
DROP ROLE IF EXISTS regress_copies_app;
RESET client_min_messages;
-- the tables belong to a plain role, as in production; the application
-- role gets rights on the message tables only, none on the copy tables
CREATE ROLE regress_copies_owner;
CREATE ROLE regress_copies_app;
CREATE SCHEMA copies AUTHORIZATION regress_copies_owner;
GRANT USAGE ON SCHEMA copies TO regress_copies_app;
SET search_path = copies, public;
-- (the suite looks at its own schema only)
CREATE FUNCTION pg_temp.in_schema(rel regclass) RETURNS boolean LANGUAGE sql AS $$
    SELECT relnamespace = 'copies'::regnamespace FROM pg_class WHERE oid = rel
$$;
SET ROLE regress_copies_owner;

------------------------------------------------------------------------
-- The schema
------------------------------------------------------------------------
-- messages; a reply quotes the message it answers (reply_to_id, quoted_text)
CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id int NOT NULL,
    sender          text NOT NULL,
    body            text,
    reply_to_id     bigint,
    quoted_text     text
);
CREATE INDEX messages_reply_to_id_idx ON messages (reply_to_id);
-- the conversation list: the latest message's preview, and a pinned message
CREATE TABLE conversations (
    id                   int PRIMARY KEY,
    title                text NOT NULL,
    last_message_id      bigint,
    last_message_preview text,
    pinned_message_id    bigint,
    pinned_text          text
);
CREATE INDEX conversations_last_message_id_idx ON conversations (last_message_id);
CREATE INDEX conversations_pinned_message_id_idx ON conversations (pinned_message_id);
-- Synapse's search side table: rows are deleted with the message
CREATE TABLE event_search (
    event_id  bigint,
    room_id   int,
    vector    tsvector
);
-- Synapse's body side table: json is NOT NULL, its tombstone is '{}'
CREATE TABLE event_json (
    event_id  bigint PRIMARY KEY,
    room_id   int NOT NULL,
    json      text NOT NULL DEFAULT '{}'
);
-- Mattermost's posts: an edit keeps the earlier text as a row of its own
-- whose originalid is the post's id ('' for the post itself)
CREATE TABLE posts (
    id          text PRIMARY KEY,
    userid      text NOT NULL,
    createat    bigint NOT NULL,
    originalid  text NOT NULL DEFAULT '',
    message     varchar(65535) NOT NULL,
    props       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX posts_originalid_idx ON posts (originalid);

INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text) VALUES
    (1, 1, 'alice', 'xyzzy-1 the launch code is 0000', NULL, NULL),
    (2, 1, 'bob',   'what code?', 1, 'xyzzy-1 the launch code is 0000'),
    (3, 2, 'bob',   'xyzzy-3 my password is hunter2', NULL, NULL),
    (4, 2, 'alice', 'change it', 3, 'xyzzy-3 my password is hunter2'),
    (5, 2, 'alice', 'see you', NULL, NULL),
    (6, 2, 'bob',   'bye', 5, 'see you'),
    (7, 3, 'carol', 'xyzzy-7 buy pills', NULL, NULL),
    (8, 3, 'carol', 'xyzzy-8 cheap pills', 7, 'xyzzy-7 buy pills'),
    (9, 3, 'dave',  'stop it', 8, 'xyzzy-8 cheap pills'),
    (10, 1, 'alice', 'xyzzy-10 oops, wrong chat', NULL, NULL),
    (11, 4, 'erin', 'xyzzy-11 merge me', NULL, NULL),
    (12, 4, 'frank', 'hm', 11, 'xyzzy-11 merge me'),
    (13, 4, 'erin', 'xyzzy-13 upsert me', NULL, NULL),
    (14, 4, 'frank', 'hm hm', 13, 'xyzzy-13 upsert me'),
    (15, 4, 'erin', 'xyzzy-15 join me', NULL, NULL),
    (16, 4, 'frank', 'hm hm hm', 15, 'xyzzy-15 join me');
INSERT INTO conversations VALUES
    (1, 'general', 10, 'xyzzy-10 oops, wrong chat', 1, 'xyzzy-1 the launch code is 0000'),
    (2, 'random', 6, 'bye', 3, 'xyzzy-3 my password is hunter2'),
    (3, 'offers', 9, 'stop it', 7, 'xyzzy-7 buy pills'),
    (4, 'paths', 16, 'hm hm hm', 11, 'xyzzy-11 merge me'),
    (5, 'empty', NULL, NULL, NULL, NULL);
INSERT INTO event_search SELECT id, conversation_id, to_tsvector('simple', body) FROM messages;
INSERT INTO event_json SELECT id, conversation_id, json_build_object('body', body)::text FROM messages;
INSERT INTO posts VALUES
    ('p1',   'alice', 1700000000000, '',   'xyzzy-p1 v3, the current text', '{"file": "xyzzy-p1.png"}'),
    ('p1v1', 'alice', 1700000000000, 'p1', 'xyzzy-p1 v1', '{"file": "xyzzy-p1.png"}'),
    ('p1v2', 'alice', 1700000000000, 'p1', 'xyzzy-p1 v2', '{}'),
    ('p2',   'bob',   1700000000000, '',   'hello everyone', '{}'),
    ('p2v1', 'bob',   1700000000000, 'p2', 'helo everyone', '{}'),
    ('p3',   'carol', 1700000000000, '',   'xyzzy-p3 v2', '{}'),
    ('p3v1', 'carol', 1700000000000, 'p3', 'xyzzy-p3 v1', '{"mention": "xyzzy"}');

SELECT recall.enable('messages', '{body}', sender => 'sender', conversation => 'conversation_id');
SELECT recall.enable('posts', '{message,props}', sender => 'userid',
                     sent_at => 'createat', sent_at_unit => 'ms');

------------------------------------------------------------------------
-- Registering the copies
------------------------------------------------------------------------
-- a conversation preview, and a pinned message in the same table
SELECT recall.add_copy('messages', 'conversations', '{last_message_id}', '{last_message_preview}');
SELECT recall.add_copy('messages', 'conversations', '{pinned_message_id}', '{pinned_text}');
-- a quote in the message table itself
SELECT recall.add_copy('messages', 'messages', '{reply_to_id}', '{quoted_text}');
-- a search side table: its rows go (content is NULL for 'delete');
-- without an index on event_id each recall would scan it: a NOTICE says so
SELECT recall.add_copy('messages', 'event_search', '{event_id}', action => 'delete');
CREATE INDEX event_search_event_id_idx ON event_search (event_id);
-- a NOT NULL body side table: json is wiped to its constant default '{}'
SELECT recall.add_copy('messages', 'event_json', '{event_id}', '{json}');
-- the versions of a post, rows of the same table: message (NOT NULL, no
-- default) is wiped to '', props (NOT NULL DEFAULT '{}') to '{}'
SELECT recall.add_copy('posts', 'posts', '{originalid}', '{message,props}');

-- registering again replaces the registration
SELECT recall.add_copy('posts', 'posts', '{originalid}', '{message,props}');

SELECT tbl, copy, match, content, wiped_values, action
FROM recall.copies WHERE pg_temp.in_schema(copy)
ORDER BY tbl::text, copy::text, match::text;
-- the guards: BEFORE INSERT OR UPDATE on every copy table, for the rows
-- that point at a message; AFTER UPDATE as well for a 'delete' copy
SELECT tgrelid::regclass AS copy_table, tgname, pg_get_triggerdef(oid) AS definition
FROM pg_trigger
WHERE tgname LIKE '~recall_copy%' AND pg_temp.in_schema(tgrelid)
ORDER BY tgrelid::regclass::text, tgname;

-- Does any column of any row of the schema hold a text?  Every column of
-- every table is cast to text and searched; the tables of recall.* (the
-- registries, the event log, the audit) are searched too, as one.
RESET ROLE;
CREATE FUNCTION pg_temp.marker_hits(marker text)
RETURNS TABLE (tbl text, rows_with_marker bigint)
LANGUAGE plpgsql AS $$
DECLARE
    t     record;
    n     bigint;
    in_recall bigint := 0;
BEGIN
    FOR t IN SELECT c.table_schema, c.table_name,
                    string_agg(format('%I::text ILIKE $1', c.column_name), ' OR '
                               ORDER BY c.ordinal_position) AS cond
             FROM information_schema.columns c
             JOIN information_schema.tables b USING (table_schema, table_name)
             WHERE c.table_schema IN ('copies', 'recall') AND b.table_type = 'BASE TABLE'
             GROUP BY 1, 2 ORDER BY 1, 2
    LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE %s', t.table_schema, t.table_name, t.cond)
            INTO n USING '%' || marker || '%';
        IF t.table_schema = 'recall' THEN
            in_recall := in_recall + n;
        ELSE
            tbl := format('%I.%I', t.table_schema, t.table_name);
            rows_with_marker := n;
            RETURN NEXT;
        END IF;
    END LOOP;
    tbl := 'recall.*';
    rows_with_marker := in_recall;
    RETURN NEXT;
END
$$;
-- before any recall the marker is everywhere in the schema
SELECT * FROM pg_temp.marker_hits('xyzzy');

-- what the suite looks at (the three recall columns as a flag)
CREATE FUNCTION pg_temp.msg(i bigint) RETURNS TABLE (
    id bigint, body text, reply_to_id bigint, quoted_text text, recalled boolean)
LANGUAGE sql AS $$
    SELECT id, body, reply_to_id, quoted_text, recalled_at IS NOT NULL
    FROM copies.messages WHERE id = i
$$;
CREATE FUNCTION pg_temp.copies_of(i bigint) RETURNS TABLE (what text, row_key text, copied text)
LANGUAGE sql AS $$
    SELECT 'quote', id::text, quoted_text FROM copies.messages WHERE reply_to_id = i
    UNION ALL
    SELECT 'preview', id::text, last_message_preview FROM copies.conversations
    WHERE last_message_id = i
    UNION ALL
    SELECT 'pinned', id::text, pinned_text FROM copies.conversations WHERE pinned_message_id = i
    UNION ALL
    SELECT 'search', event_id::text, vector::text FROM copies.event_search WHERE event_id = i
    UNION ALL
    SELECT 'json', event_id::text, json FROM copies.event_json WHERE event_id = i
    ORDER BY 1, 2
$$;

------------------------------------------------------------------------
-- recall.recall(): the copies go in the same statement
------------------------------------------------------------------------
SELECT * FROM pg_temp.copies_of(1);
BEGIN;
SELECT recall.recall('messages', 1, 'alice');
-- within the recall's own transaction, nothing is left
SELECT * FROM pg_temp.msg(1);
SELECT * FROM pg_temp.copies_of(1);
COMMIT;
-- one event: the copies are not recalls of their own
SELECT pk, actor, privileged FROM recall.events
WHERE tbl = 'copies.messages'::regclass ORDER BY seq;
-- the quoting message itself is untouched but for the quote
SELECT * FROM pg_temp.msg(2);

------------------------------------------------------------------------
-- The application role: SELECT and UPDATE on messages, no privilege at
-- all on the copy tables; the copy tables' row-level security (forced)
-- hides every row from everyone, their owner included
------------------------------------------------------------------------
GRANT SELECT, UPDATE ON messages TO regress_copies_app;
ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE event_search ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_search FORCE ROW LEVEL SECURITY;
ALTER TABLE event_json ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_json FORCE ROW LEVEL SECURITY;
CREATE POLICY nobody ON conversations USING (false);
CREATE POLICY nobody ON event_search USING (false);
CREATE POLICY nobody ON event_json USING (false);
SELECT * FROM pg_temp.copies_of(10);
SELECT * FROM pg_temp.copies_of(3);
SET ROLE regress_copies_app;
-- the application cannot read the copy tables
SELECT count(*) FROM conversations;
\echo :SQLSTATE
-- by recall.recall(), with an empty search_path
SET search_path = '';
SELECT recall.recall('copies.messages', 10, 'alice');
-- by a plain UPDATE
SET search_path = copies, public;
UPDATE messages SET recalled_at = now(), recalled_by = 'bob' WHERE id = 3;
RESET ROLE;
SELECT * FROM pg_temp.msg(10);
SELECT * FROM pg_temp.copies_of(10);
SELECT * FROM pg_temp.msg(3);
SELECT * FROM pg_temp.copies_of(3);
-- the application's privileges are unchanged
SELECT has_table_privilege('regress_copies_app', 'conversations', 'UPDATE') AS conversations,
       has_table_privilege('regress_copies_app', 'event_search', 'DELETE') AS event_search,
       has_table_privilege('regress_copies_app', 'event_json', 'UPDATE') AS event_json;

------------------------------------------------------------------------
-- recall_sender(): an admin's bulk recall of carol's messages (7, 8):
-- 8 quotes 7 and is quoted by 9; 7 is pinned
------------------------------------------------------------------------
SELECT * FROM pg_temp.copies_of(7);
SELECT * FROM pg_temp.copies_of(8);
SELECT recall.recall_sender('messages', 'carol', 'spam');
SELECT * FROM pg_temp.msg(7);
SELECT * FROM pg_temp.msg(8);
SELECT * FROM pg_temp.msg(9);
SELECT * FROM pg_temp.copies_of(7);
SELECT * FROM pg_temp.copies_of(8);

------------------------------------------------------------------------
-- The other write paths: MERGE, INSERT ... ON CONFLICT, UPDATE ... FROM
------------------------------------------------------------------------
MERGE INTO messages m USING (VALUES (11::bigint)) AS v(id) ON m.id = v.id
WHEN MATCHED THEN UPDATE SET recalled_at = now(), recalled_by = 'erin';
INSERT INTO messages (id, conversation_id, sender) VALUES (13, 4, 'erin')
ON CONFLICT (id) DO UPDATE SET recalled_at = now(), recalled_by = 'erin';
UPDATE messages m SET recalled_at = now(), recalled_by = 'erin'
FROM (VALUES (15::bigint)) AS v(id) WHERE m.id = v.id;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM messages
WHERE id IN (11, 13, 15) ORDER BY id;
SELECT * FROM pg_temp.copies_of(11);
SELECT * FROM pg_temp.copies_of(13);
SELECT * FROM pg_temp.copies_of(15);

------------------------------------------------------------------------
-- Versions of an edited post, rows of the same table
------------------------------------------------------------------------
GRANT SELECT, UPDATE ON posts TO regress_copies_app;
SELECT id, originalid, message, props FROM posts ORDER BY id;
SELECT recall.recall('posts', 'p1'::text, 'alice');
SET ROLE regress_copies_app;
UPDATE posts SET recalled_at = now(), recalled_by = 'carol' WHERE id = 'p3';
RESET ROLE;
-- the versions are wiped, not recalled: no recall columns, no events,
-- no permission of their own
SELECT id, originalid, message, props, recalled_at IS NOT NULL AS recalled, recalled_by
FROM posts ORDER BY id;
SELECT pk, actor FROM recall.events WHERE tbl = 'copies.posts'::regclass ORDER BY seq;

-- nothing of a recalled text is left anywhere
SELECT * FROM pg_temp.marker_hits('xyzzy');
-- and the texts not recalled are all still there
SELECT id, body, quoted_text FROM messages WHERE recalled_at IS NULL ORDER BY id;
SELECT id, last_message_id, last_message_preview, pinned_message_id, pinned_text
FROM conversations ORDER BY id;
SELECT event_id, vector FROM event_search ORDER BY event_id;
SELECT event_id, json FROM event_json ORDER BY event_id;

------------------------------------------------------------------------
-- The guard: a later write pointing at a recalled message
------------------------------------------------------------------------
-- a quote of a recalled message: stored without its text
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (20, 1, 'bob', 'did you say something?', 1, 'xyzzy-1 the launch code is 0000');
SELECT * FROM pg_temp.msg(20);
-- a quote of a live message keeps its text; pointing it at a recalled
-- message later drops it
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (21, 2, 'bob', 'quoting', 5, 'see you');
SELECT * FROM pg_temp.msg(21);
UPDATE messages SET reply_to_id = 3, quoted_text = 'xyzzy-3 my password is hunter2' WHERE id = 21;
SELECT * FROM pg_temp.msg(21);
-- a preview refreshed to a recalled message (as the chat server does when
-- it recomputes a conversation's latest message)
UPDATE conversations SET last_message_id = 10, last_message_preview = 'xyzzy-10 oops, wrong chat'
WHERE id = 5;
SELECT id, last_message_id, last_message_preview FROM conversations WHERE id = 5;
-- an indexer writing its (stale) search row back: the INSERT is skipped
INSERT INTO event_search VALUES (1, 1, to_tsvector('simple', 'xyzzy-1 the launch code is 0000'));
SELECT count(*) FROM event_search WHERE event_id = 1;
-- an indexer-style UPDATE that moves a search row to a recalled message
-- deletes it
INSERT INTO event_search VALUES (99, 1, to_tsvector('simple', 'xyzzy-10 oops, wrong chat'));
UPDATE event_search SET event_id = 10 WHERE event_id = 99;
SELECT count(*) FROM event_search WHERE event_id IN (10, 99);
-- an UPDATE of a live message's search row is kept
UPDATE event_search SET vector = to_tsvector('simple', 'see you again') WHERE event_id = 5;
SELECT event_id, vector FROM event_search WHERE event_id = 5;
-- an indexer rewriting the body side table: wiped to '{}' again
UPDATE event_json SET json = '{"body": "xyzzy-1 the launch code is 0000"}' WHERE event_id = 1;
DELETE FROM event_json WHERE event_id = 7;
INSERT INTO event_json VALUES (7, 3, '{"body": "xyzzy-7 buy pills"}');
-- a row moved to a recalled message
INSERT INTO event_json VALUES (100, 1, '{"body": "xyzzy-10 oops, wrong chat"}');
DELETE FROM event_json WHERE event_id = 10;
UPDATE event_json SET event_id = 10 WHERE event_id = 100;
SELECT event_id, json FROM event_json WHERE event_id IN (1, 7, 10, 100) ORDER BY event_id;
-- a COPY, as a bulk loader does
DELETE FROM event_json WHERE event_id = 3;
COPY event_json FROM stdin;
3	2	{"body": "xyzzy-3 my password is hunter2"}
\.
SELECT event_id, json FROM event_json WHERE event_id = 3;
-- a new version row of a recalled post
INSERT INTO posts (id, userid, createat, originalid, message, props)
VALUES ('p1v3', 'alice', 1700000000000, 'p1', 'xyzzy-p1 v0', '{"file": "xyzzy-p1.png"}');
SELECT id, originalid, message, props, recalled_at IS NOT NULL AS recalled FROM posts
WHERE id = 'p1v3';
-- the application role inserts a quote: the guard needs no privilege of
-- its own either
GRANT INSERT ON messages TO regress_copies_app;
SET ROLE regress_copies_app;
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (22, 1, 'bob', 'what?', 10, 'xyzzy-10 oops, wrong chat');
RESET ROLE;
SELECT * FROM pg_temp.msg(22);

-- Once the recalled message is deleted, recall.events still says it was
-- recalled: the guard keeps working
DELETE FROM messages WHERE id = 1;
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (23, 1, 'bob', 'late reply', 1, 'xyzzy-1 the launch code is 0000');
SELECT * FROM pg_temp.msg(23);
INSERT INTO event_search VALUES (1, 1, to_tsvector('simple', 'xyzzy-1 the launch code is 0000'));
SELECT count(*) FROM event_search WHERE event_id = 1;
UPDATE conversations SET pinned_message_id = 1, pinned_text = 'xyzzy-1 the launch code is 0000'
WHERE id = 5;
SELECT id, pinned_message_id, pinned_text FROM conversations WHERE id = 5;
-- a deleted message never recalled is not: its quote keeps its text
DELETE FROM messages WHERE id = 6;
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (24, 2, 'alice', 'quoting a deleted message', 6, 'bye');
SELECT * FROM pg_temp.msg(24);
-- a message that does not exist at all
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (25, 2, 'alice', 'quoting nothing', 999, 'imagined');
SELECT * FROM pg_temp.msg(25);

SELECT * FROM pg_temp.marker_hits('xyzzy');

------------------------------------------------------------------------
-- drop_copy: the copy is no longer wiped nor guarded; the other
-- registrations of the same table keep their guard
------------------------------------------------------------------------
SET ROLE regress_copies_owner;
SELECT recall.drop_copy('messages', 'conversations', '{last_message_id}');
SELECT copy, match FROM recall.copies WHERE copy = 'conversations'::regclass;
-- the trigger now fires for the pinned message alone
SELECT pg_get_triggerdef(oid) FROM pg_trigger
WHERE tgrelid = 'conversations'::regclass AND tgname LIKE '~recall_copy%';
RESET ROLE;
UPDATE conversations SET last_message_id = 3, last_message_preview = 'xyzzy-3 my password is hunter2'
WHERE id = 5;
SELECT id, last_message_id, last_message_preview FROM conversations WHERE id = 5;
-- add_copy treats the copies of messages already recalled at once, as a
-- recall does: the copy table's row-level security, forced, does not hide
-- them (the owner registers)
SET ROLE regress_copies_owner;
SELECT recall.add_copy('messages', 'conversations', '{last_message_id}', '{last_message_preview}');
RESET ROLE;
SELECT id, last_message_id, last_message_preview FROM conversations WHERE id = 5;
-- the same for a 'delete' copy: the stale search row goes at add_copy
SET ROLE regress_copies_owner;
SELECT recall.drop_copy('messages', 'event_search', '{event_id}');
SELECT tgname FROM pg_trigger
WHERE tgrelid = 'event_search'::regclass AND tgname LIKE '~recall_copy%';
RESET ROLE;
INSERT INTO event_search VALUES (3, 2, to_tsvector('simple', 'xyzzy-3 my password is hunter2'));
SELECT count(*) FROM event_search WHERE event_id = 3;
SET ROLE regress_copies_owner;
SELECT recall.add_copy('messages', 'event_search', '{event_id}', action => 'delete');
RESET ROLE;
SELECT count(*) FROM event_search WHERE event_id = 3;
-- and for quotes (no row-level security) of a recalled message (3) and of
-- one deleted since its recall (1)
SET ROLE regress_copies_owner;
SELECT recall.drop_copy('messages', 'messages', '{reply_to_id}');
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text) VALUES
    (26, 2, 'bob', 'quoting 3', 3, 'xyzzy-3 my password is hunter2'),
    (27, 1, 'bob', 'quoting 1', 1, 'xyzzy-1 the launch code is 0000');
SELECT recall.add_copy('messages', 'messages', '{reply_to_id}', '{quoted_text}');
RESET ROLE;
SELECT * FROM pg_temp.msg(26);
SELECT * FROM pg_temp.msg(27);

SELECT * FROM pg_temp.marker_hits('xyzzy');

------------------------------------------------------------------------
-- A composite key, match columns of other (castable) types, and names
-- that need quoting
------------------------------------------------------------------------
SET ROLE regress_copies_owner;
CREATE TABLE "Room Messages" (
    "Room"  text,
    "Seq"   int,
    "Body"  text,
    PRIMARY KEY ("Room", "Seq")
);
CREATE TABLE "Pins ☃" (
    "Pin ID"   serial PRIMARY KEY,
    "Room Name" varchar(20),
    "Message Seq" bigint,
    "Pinned ""Text""" text
);
CREATE INDEX ON "Pins ☃" ("Room Name", "Message Seq");
INSERT INTO "Room Messages" VALUES ('lobby', 1, 'xyzzy-lobby-1'), ('lobby', 2, 'fine'),
                                   ('attic', 1, 'dusty');
INSERT INTO "Pins ☃" ("Room Name", "Message Seq", "Pinned ""Text""") VALUES
    ('lobby', 1, 'xyzzy-lobby-1'), ('lobby', 2, 'fine'), ('attic', 1, 'dusty');
SELECT recall.enable('"Room Messages"', '{Body}');
SELECT recall.add_copy('"Room Messages"', '"Pins ☃"', '{Room Name,Message Seq}', '{"Pinned \"Text\""}');
RESET ROLE;
-- no sender column: an admin recalls, with a reason
SELECT recall.recall('"Room Messages"', '{"Room": "lobby", "Seq": 1}'::jsonb, reason => 'pinned by mistake');
SELECT * FROM "Pins ☃" ORDER BY "Pin ID";
INSERT INTO "Pins ☃" ("Room Name", "Message Seq", "Pinned ""Text""") VALUES ('lobby', 1, 'xyzzy-lobby-1 again');
SELECT * FROM "Pins ☃" ORDER BY "Pin ID";

-- a match column of another type than the key (text for a bigint key):
-- a row whose match cannot be a key of the message table points at no
-- message, and is stored as written
SET ROLE regress_copies_owner;
CREATE TABLE bridge_refs (remote_id text, note text);
CREATE INDEX ON bridge_refs (remote_id);
INSERT INTO bridge_refs VALUES ('3', 'xyzzy-3 my password is hunter2'), ('5', 'see you');
SELECT recall.add_copy('messages', 'bridge_refs', '{remote_id}', '{note}');
SELECT * FROM bridge_refs ORDER BY remote_id COLLATE "C";
INSERT INTO bridge_refs VALUES ('$abc:matrix.org', 'from the other network');
INSERT INTO bridge_refs VALUES ('10', 'xyzzy-10 oops, wrong chat');
SELECT * FROM bridge_refs ORDER BY remote_id COLLATE "C";
RESET ROLE;

-- a partitioned copy table: the guards are on every partition
SET ROLE regress_copies_owner;
CREATE TABLE search_log (event_id bigint, day date, words text) PARTITION BY RANGE (day);
CREATE TABLE search_log_jan PARTITION OF search_log FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE search_log_feb PARTITION OF search_log FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE INDEX ON search_log (event_id);
INSERT INTO search_log VALUES (5, '2024-01-05', 'see you'), (5, '2024-02-05', 'see you'),
                              (9, '2024-01-09', 'stop it'), (12, '2024-02-12', 'hm');
SELECT recall.add_copy('messages', 'search_log', '{event_id}', action => 'delete');
SELECT tgrelid::regclass, tgname FROM pg_trigger
WHERE tgname LIKE '~recall_copy%' AND tgrelid::regclass::text LIKE 'search_log%' ORDER BY 1, 2;
RESET ROLE;
SELECT recall.recall('messages', 5, 'alice');
SELECT tableoid::regclass, * FROM search_log ORDER BY event_id, day;
INSERT INTO search_log VALUES (5, '2024-01-20', 'see you');
UPDATE search_log SET event_id = 5 WHERE event_id = 9;
SELECT tableoid::regclass, * FROM search_log ORDER BY event_id, day;

SELECT * FROM pg_temp.marker_hits('xyzzy');

-- dropping a message table drops its copy registrations and their guards
SET ROLE regress_copies_owner;
SET client_min_messages = warning;
DROP TABLE "Room Messages" CASCADE;
RESET client_min_messages;
SELECT count(*) AS registrations FROM recall.copies WHERE copy = '"Pins ☃"'::regclass;
SELECT tgname FROM pg_trigger WHERE tgrelid = '"Pins ☃"'::regclass;
RESET ROLE;

------------------------------------------------------------------------
-- disable drops the table's copy registrations and guards
------------------------------------------------------------------------
SET ROLE regress_copies_owner;
SELECT recall.disable('posts');
SELECT tbl, copy, match FROM recall.copies WHERE pg_temp.in_schema(copy)
ORDER BY tbl::text, copy::text, match::text;
SELECT recall.disable('messages');
SELECT count(*) AS registrations FROM recall.copies WHERE pg_temp.in_schema(copy);
SELECT tgrelid::regclass, tgname FROM pg_trigger
WHERE tgname LIKE '~recall%' AND pg_temp.in_schema(tgrelid)
ORDER BY 1, 2;
-- no guard any more: a quote keeps its text
INSERT INTO messages (id, conversation_id, sender, body, reply_to_id, quoted_text)
VALUES (30, 1, 'bob', 'after disable', 10, 'quoted after disable');
SELECT id, reply_to_id, quoted_text FROM messages WHERE id = 30;
RESET ROLE;

SET client_min_messages = warning;
DROP SCHEMA copies CASCADE;
RESET client_min_messages;
DROP ROLE regress_copies_app, regress_copies_owner;
