--
-- enable: recall.enable() and recall.disable() on tables as real schemas
-- have them: what they add, what they record, and what they leave alone.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

-- Everything pg_recall put on a table, one line per object, sorted.
CREATE FUNCTION pg_temp.shape(t regclass) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT s FROM (
        SELECT 'column ' || quote_ident(a.attname) || ' '
               || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS s
        FROM pg_attribute a
        WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'trigger ' || pg_get_triggerdef(g.oid)
        FROM pg_trigger g WHERE g.tgrelid = t AND NOT g.tgisinternal
        UNION ALL
        SELECT 'constraint ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid)
        FROM pg_constraint c WHERE c.conrelid = t
        UNION ALL
        SELECT 'view ' || v.oid::regclass::text
        FROM pg_class v JOIN pg_class r ON v.relnamespace = r.relnamespace
        WHERE r.oid = t AND v.relkind = 'v' AND v.relname = r.relname || '_visible'
        UNION ALL
        SELECT 'registry ' || (r.key_columns, r.content, r.wiped_values, r.sender,
                               r.sent_at, r.sent_at_unit, r.conversation,
                               r.recall_window, r.channel, r.on_recalled_write,
                               r.actor_source, r.actor_setting, r.actor_claim,
                               r.view_name)::text
        FROM recall.tables r WHERE r.tbl = t
    ) x ORDER BY s COLLATE "C"
$$;

------------------------------------------------------------------------
-- A plain messages table.
------------------------------------------------------------------------
CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id bigint NOT NULL,
    sender          text NOT NULL,
    sent_at         timestamptz NOT NULL DEFAULT now(),
    body            text,
    extra           jsonb
);
INSERT INTO messages (id, conversation_id, sender, body, extra)
VALUES (1, 7, 'alice', 'hello', '{"mentions": ["bob"]}'),
       (2, 7, 'bob', 'hi alice', NULL);
SELECT pg_temp.shape('messages');

-- enable returns the view it created
SELECT recall.enable('messages', '{body,extra}',
                     sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation_id');

-- the registry row, with the defaults of the optional settings
SELECT tbl, key_columns, content, wiped_values, sender, sent_at, sent_at_unit,
       conversation, recall_window, channel, on_recalled_write, actor_source,
       actor_setting, actor_claim, view_name, enabled_at <= now() AS enabled_before_now
FROM recall.tables WHERE tbl = 'messages'::regclass;

-- three columns added, one trigger (which also holds the invariant) and the view
SELECT pg_temp.shape('messages');

-- the trigger fires ALWAYS: under session_replication_role = replica (a logical
-- replication subscriber) it checks the invariant and nothing else
SELECT tgname, tgenabled FROM pg_trigger
WHERE tgrelid = 'messages'::regclass AND NOT tgisinternal ORDER BY tgname;

-- the view: every column but the recall ones, unrecalled rows only,
-- security_invoker and no security_barrier, owned by the table's owner
SELECT pg_get_viewdef('messages_visible'::regclass, true);
SELECT reloptions FROM pg_class WHERE oid = 'messages_visible'::regclass;
SELECT v.relowner = t.relowner AS same_owner
FROM pg_class v, pg_class t
WHERE v.oid = 'messages_visible'::regclass AND t.oid = 'messages'::regclass;
SELECT id, conversation_id, sender, body, extra FROM messages_visible ORDER BY id;

-- content statistics are not kept (pg_statistic would keep common values)
SELECT attname, attstattarget FROM pg_attribute
WHERE attrelid = 'messages'::regclass AND attname IN ('body', 'extra')
ORDER BY attname;

-- objects made on the user's table are not extension members, so
-- pg_dump carries them like any other object
SELECT count(*) AS extension_members
FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_recall')
  AND d.deptype = 'e'
  AND ((d.classid = 'pg_class'::regclass AND d.objid = 'messages_visible'::regclass)
       OR (d.classid = 'pg_trigger'::regclass
           AND d.objid IN (SELECT oid FROM pg_trigger WHERE tgrelid = 'messages'::regclass))
       OR (d.classid = 'pg_constraint'::regclass
           AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = 'messages'::regclass)));

-- the registry (and the audit trail) are dumped by pg_dump
SELECT 'recall.tables'::regclass = ANY (extconfig) AS tables_dumped,
       'recall.audit'::regclass = ANY (extconfig) AS audit_dumped
FROM pg_extension WHERE extname = 'pg_recall';

-- a recall through the new triggers wipes the listed columns
UPDATE messages SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1;
SELECT id, body, extra, recalled_at IS NOT NULL AS recalled, recalled_by
FROM messages ORDER BY id;
SELECT id, body FROM messages_visible ORDER BY id;

-- calling enable again updates the settings and refreshes the view
ALTER TABLE messages ADD COLUMN preview text;
UPDATE messages SET preview = 'hi ali…' WHERE id = 2;
SELECT recall.enable('messages', '{body,extra,preview}',
                     sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation_id',
                     recall_window => '15 minutes', channel => 'chat_recall');
SELECT content, wiped_values, recall_window, channel
FROM recall.tables WHERE tbl = 'messages'::regclass;
SELECT id, conversation_id, sender, body, extra, preview FROM messages_visible ORDER BY id;
-- still exactly one set of triggers and one constraint
SELECT pg_temp.shape('messages');

-- disable: triggers, constraint, view and registry row go; columns and
-- data stay
SELECT recall.disable('messages');
SELECT pg_temp.shape('messages');
SELECT id, body, preview, recalled_at IS NOT NULL AS recalled, recalled_by
FROM messages ORDER BY id;
SELECT to_regclass('messages_visible') IS NULL AS view_gone;
-- without the triggers, an UPDATE is just an UPDATE
UPDATE messages SET body = 'edited' WHERE id = 1;
-- enable again on the table that kept its recall columns (no error, the
-- columns are reused) and the recalled row is wiped again at once
SELECT recall.enable('messages', '{body,extra,preview}', sender => 'sender');
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM messages ORDER BY id;
SELECT recall.disable('messages');
DROP TABLE messages;

------------------------------------------------------------------------
-- Wiped values: NULL for nullable columns; for NOT NULL ones a constant
-- DEFAULT (the DBA's tombstone), else the empty value of the type.
------------------------------------------------------------------------
CREATE DOMAIN message_text AS varchar(200);
CREATE TABLE notnull_msgs (
    id        int PRIMARY KEY,
    t         text NOT NULL,
    vc        varchar(20) NOT NULL,
    ch        char(3) NOT NULL,
    dom       message_text NOT NULL,
    jb        jsonb NOT NULL,
    js        json NOT NULL,
    bin       bytea NOT NULL,
    tags      text[] NOT NULL,
    nums      int[] NOT NULL,
    tsv       tsvector NOT NULL,
    tomb      text NOT NULL DEFAULT '[recalled]',
    doc       text NOT NULL DEFAULT '{}',
    score     int NOT NULL DEFAULT 0,
    rnd       text NOT NULL DEFAULT (random()::text),
    opt_text  text,
    opt_int   int
);
INSERT INTO notnull_msgs VALUES
    (1, 'text', 'varchar', 'abc', 'domain text', '{"a": 1}', '{"b": 2}',
     '\xdeadbeef', '{x,y}', '{1,2}', to_tsvector('simple', 'secret words'),
     'tombstoned text', '{"body": "doc"}', 42, 'random text', 'optional', 7);
SELECT recall.enable('notnull_msgs',
                     '{t,vc,ch,dom,jb,js,bin,tags,nums,tsv,tomb,doc,score,rnd,opt_text,opt_int}');
SELECT u.col, coalesce(quote_literal(u.wiped), 'NULL') AS wiped
FROM recall.tables r, unnest(r.content, r.wiped_values) WITH ORDINALITY AS u(col, wiped, n)
WHERE r.tbl = 'notnull_msgs'::regclass ORDER BY u.n;
-- recall the row (no sender column: admin power, here the superuser's,
-- with a reason) and look at what is left
UPDATE notnull_msgs SET recalled_at = now(), recall_reason = 'wiped values test'
WHERE id = 1;
SELECT t = '' AS t, vc = '' AS vc, ch = '' AS ch, dom = '' AS dom,
       jb = '{}' AS jb, js::text = '{}' AS js, bin = '' AS bin,
       tags = '{}' AS tags, nums = '{}' AS nums, tsv = '' AS tsv,
       tomb = '[recalled]' AS tomb, doc = '{}' AS doc, score = 0 AS score,
       rnd = '' AS rnd, opt_text IS NULL AS opt_text, opt_int IS NULL AS opt_int
FROM notnull_msgs;
SELECT t, vc, ch, dom, jb, js, bin, tags, nums, tsv, tomb, doc, score, rnd,
       opt_text, opt_int, recall_reason
FROM notnull_msgs;
DROP TABLE notnull_msgs CASCADE;
DROP DOMAIN message_text;

------------------------------------------------------------------------
-- NOTICEs: the table's other row triggers see the old content in OLD;
-- tsvector columns not listed as content keep the message's words.
------------------------------------------------------------------------
CREATE TABLE noisy (
    id     int PRIMARY KEY,
    body   text,
    search tsvector,
    title_search tsvector
);
CREATE FUNCTION noisy_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NEW;
END $$;
CREATE TRIGGER noisy_audit AFTER UPDATE ON noisy FOR EACH ROW EXECUTE FUNCTION noisy_copy();
CREATE TRIGGER "Noisy Search" BEFORE INSERT OR UPDATE ON noisy FOR EACH ROW EXECUTE FUNCTION noisy_copy();
CREATE TRIGGER noisy_stmt AFTER UPDATE ON noisy FOR EACH STATEMENT EXECUTE FUNCTION noisy_copy();
SELECT recall.enable('noisy', '{body,search}');
-- listing them as content silences the tsvector notice
SELECT recall.enable('noisy', '{body,search,title_search}');
DROP TRIGGER noisy_audit ON noisy;
DROP TRIGGER "Noisy Search" ON noisy;
-- no other row trigger, no unlisted tsvector: no notice at all
SELECT recall.enable('noisy', '{body,search,title_search}');
DROP TABLE noisy CASCADE;
DROP FUNCTION noisy_copy();

------------------------------------------------------------------------
-- Re-enabling with a new content column wipes it in rows already recalled.
------------------------------------------------------------------------
CREATE TABLE quotes (
    id       int PRIMARY KEY,
    sender   text,
    body     text,
    preview  text,
    html     text NOT NULL DEFAULT ''
);
INSERT INTO quotes VALUES (1, 'alice', 'first', 'fir…', '<p>first</p>'),
                          (2, 'bob', 'second', 'sec…', '<p>second</p>');
SELECT recall.enable('quotes', '{body}', sender => 'sender');
UPDATE quotes SET recalled_at = now(), recalled_by = 'alice' WHERE id = 1;
SELECT id, body, preview, html FROM quotes ORDER BY id;
-- the derived columns were forgotten; list them now
SELECT recall.enable('quotes', '{body,preview,html}', sender => 'sender');
SELECT id, body, preview, html, recalled_at IS NOT NULL AS recalled FROM quotes ORDER BY id;
-- and no CHECK constraint: the guard trigger holds the invariant
SELECT pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = 'quotes'::regclass AND conname = 'recall_wiped';
-- one event, the recall's: the backfill is not a recall
SELECT count(*) AS events FROM recall.events WHERE tbl = 'quotes'::regclass;
DROP TABLE quotes CASCADE;

------------------------------------------------------------------------
-- A table without a primary key (Synapse's event tables): the key comes
-- from the replica identity index.
------------------------------------------------------------------------
CREATE TABLE events_json (
    room_id  text NOT NULL,
    event_id text NOT NULL,
    json     text NOT NULL,
    note     text
);
CREATE UNIQUE INDEX events_json_event_id ON events_json (event_id, room_id);
ALTER TABLE events_json REPLICA IDENTITY USING INDEX events_json_event_id;
INSERT INTO events_json VALUES ('!r:hs', '$e1', '{"body": "secret"}', 'n1'),
                               ('!r:hs', '$e2', '{"body": "kept"}', 'n2');
SELECT recall.enable('events_json', '{json}', conversation => 'room_id');
SELECT key_columns, content, wiped_values FROM recall.tables
WHERE tbl = 'events_json'::regclass;
SELECT recall.recall('events_json', '{"event_id": "$e1", "room_id": "!r:hs"}'::jsonb,
                     reason => 'redaction');
SELECT event_id, json, note, recalled_at IS NOT NULL AS recalled FROM events_json ORDER BY event_id;
SELECT pk, conversation, privileged, reason FROM recall.events
WHERE tbl = 'events_json'::regclass;
DROP TABLE events_json CASCADE;

------------------------------------------------------------------------
-- Epoch time in an integer column (Mattermost's createat, milliseconds),
-- and seconds.  The window is judged by an application role (the
-- superuser running this suite counts as an admin).
------------------------------------------------------------------------
SET TIME ZONE 'UTC';
SET DateStyle = 'ISO, YMD';
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_enable_app;
RESET client_min_messages;
CREATE ROLE regress_enable_app;
CREATE TABLE posts (
    id       text PRIMARY KEY,
    userid   text NOT NULL,
    createat bigint NOT NULL,
    message  text NOT NULL,
    props    jsonb NOT NULL DEFAULT '{}'
);
INSERT INTO posts VALUES
    ('p-new', 'u1', (extract(epoch FROM now() - interval '1 minute') * 1000)::bigint, 'fresh', '{"x": 1}'),
    ('p-old', 'u1', 946684800000, 'stale', '{"x": 2}');   -- 2000-01-01 00:00:00 UTC
SELECT recall.enable('posts', '{message,props}', sender => 'userid',
                     sent_at => 'createat', sent_at_unit => 'ms',
                     recall_window => '1 hour');
SELECT sent_at, sent_at_unit, recall_window, wiped_values FROM recall.tables
WHERE tbl = 'posts'::regclass;
GRANT SELECT, UPDATE ON posts TO regress_enable_app;
SET ROLE regress_enable_app;
-- within the window: the sender may recall
SELECT recall.recall('posts', 'p-new'::text, 'u1');
-- past the window, which ended an hour after 946684800000 ms
SELECT recall.recall('posts', 'p-old'::text, 'u1');
\echo :SQLSTATE
RESET ROLE;
SELECT id, message, props, recalled_at IS NOT NULL AS recalled FROM posts ORDER BY id;
DROP TABLE posts CASCADE;

CREATE TABLE chat_s (
    id      int PRIMARY KEY,
    author  text,
    ts      integer,
    body    text
);
INSERT INTO chat_s VALUES
    (1, 'u1', extract(epoch FROM now() - interval '30 seconds')::integer, 'a'),
    (2, 'u1', 946684800, 'b');   -- 2000-01-01 00:00:00 UTC
SELECT recall.enable('chat_s', '{body}', sender => 'author', sent_at => 'ts',
                     sent_at_unit => 's', recall_window => '5 minutes');
GRANT SELECT, UPDATE ON chat_s TO regress_enable_app;
SET ROLE regress_enable_app;
SELECT recall.recall('chat_s', 1, 'u1');
SELECT recall.recall('chat_s', 2, 'u1');
\echo :SQLSTATE
RESET ROLE;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM chat_s ORDER BY id;
DROP TABLE chat_s CASCADE;
DROP ROLE regress_enable_app;

------------------------------------------------------------------------
-- Identifiers of any spelling: nothing is pasted into SQL unquoted.
------------------------------------------------------------------------
CREATE SCHEMA "Chat Space";
CREATE TABLE "Chat Space"."Msgs ""quoted""; DROP TABLE victim; --" (
    "Message ID"   int PRIMARY KEY,
    "Sender;Name"  text,
    "Sent At"      timestamptz DEFAULT now(),
    "Room"         text,
    "Body Text"    text,
    "内容"          text,
    "select"       jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE victim (x int);
INSERT INTO "Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"
    ("Message ID", "Sender;Name", "Room", "Body Text", "内容", "select")
VALUES (1, 'Ålice', 'Lobby', 'hello', '你好', '{"k": "v"}'),
       (2, 'Bob', 'Lobby', 'bye', '再见', '{"k": "w"}');
SELECT recall.enable('"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"',
                     '{"Body Text","内容","select"}',
                     sender => 'Sender;Name', sent_at => 'Sent At',
                     conversation => 'Room', recall_window => '1 day',
                     channel => 'Chat Recall; LISTEN x');
SELECT key_columns, content, sender, sent_at, conversation, view_name, channel
FROM recall.tables
WHERE tbl = '"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"'::regclass;
SELECT pg_temp.shape('"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"');
SELECT recall.recall('"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"', 1, 'Ålice');
UPDATE "Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"
SET recalled_at = now(), recalled_by = 'Bob' WHERE "Message ID" = 2;
SELECT "Message ID", "Body Text", "内容", "select", recalled_by
FROM "Chat Space"."Msgs ""quoted""; DROP TABLE victim; --" ORDER BY 1;
SELECT pk, conversation, actor FROM recall.events
WHERE tbl = '"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"'::regclass
ORDER BY seq;
SELECT count(*) AS visible
FROM "Chat Space"."Msgs ""quoted""; DROP TABLE victim; --_visible";
-- the table named in the identifiers is still there
SELECT to_regclass('victim') IS NOT NULL AS victim_survives;
SELECT recall.disable('"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"');
SELECT pg_temp.shape('"Chat Space"."Msgs ""quoted""; DROP TABLE victim; --"');
DROP SCHEMA "Chat Space" CASCADE;
DROP TABLE victim;

-- An upper-case table in the default schema.
CREATE TABLE "Messages" ("ID" int PRIMARY KEY, "Body" text);
INSERT INTO "Messages" VALUES (1, 'x');
SELECT recall.enable('"Messages"', '{Body}');
SELECT recall.recall('"Messages"', 1, reason => 'case test');
SELECT "ID", "Body", recalled_at IS NOT NULL AS recalled, recalled_by = session_user AS by_session_user,
       recall_reason
FROM "Messages";
SELECT * FROM "Messages_visible";
SELECT pk FROM recall.events WHERE tbl = '"Messages"'::regclass;

-- DROP TABLE (with its view) removes the registry row too
DROP TABLE "Messages";
DROP TABLE "Messages" CASCADE;
SELECT count(*) AS registry_rows FROM recall.tables
WHERE view_name = 'Messages_visible';
