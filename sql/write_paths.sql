--
-- write_paths: a recall is any change of recalled_at from NULL to non-NULL,
-- whatever statement makes it, on plain and partitioned tables.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;
-- these scenarios SET recall.actor for the session; actor_scope.sql tests
-- the default scope, 'transaction'
SET recall.actor_scope = 'session';

CREATE TABLE messages (
    id              bigint PRIMARY KEY,
    conversation_id int NOT NULL,
    sender          text NOT NULL,
    sent_at         timestamptz NOT NULL,
    body            text,
    meta            jsonb,
    attachment      bytea,
    is_read         boolean NOT NULL DEFAULT false
);
INSERT INTO messages (id, conversation_id, sender, sent_at, body, meta, attachment)
SELECT i, 1 + i % 2, s.sender, '2024-01-01 12:00:00+00'::timestamptz + i * interval '1 minute',
       'text of message ' || i, jsonb_build_object('html', '<p>' || i || '</p>'),
       convert_to('file ' || i, 'UTF8')
FROM generate_series(1, 12) AS i,
     LATERAL (SELECT (ARRAY['alice','bob','carol','dave','erin','frank'])[1 + (i - 1) % 6] AS sender) s;
SELECT recall.enable('messages', '{body,meta,attachment}',
                     sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conversation_id');
SELECT id, conversation_id, sender, body FROM messages ORDER BY id;

-- What every recall of this suite must look like: the message row wiped,
-- stamped with its transaction's time, and exactly one matching event.
CREATE FUNCTION pg_temp.recalled(t regclass) RETURNS TABLE (
    pk jsonb, conversation text, actor text, reason text, privileged boolean,
    event_matches_row boolean, db_role_is_current_user boolean)
LANGUAGE sql AS $$
    SELECT e.pk, e.conversation, e.actor, e.reason, e.privileged,
           e.recalled_at = m.recalled_at AND e.actor = m.recalled_by,
           e.db_role = current_user
    FROM recall.events e
    LEFT JOIN messages m ON e.tbl = 'messages'::regclass AND m.id = (e.pk->>'id')::bigint
    WHERE e.tbl = t
    ORDER BY e.seq
$$;

------------------------------------------------------------------------
-- recall.recall(): true now, false when already recalled
------------------------------------------------------------------------
BEGIN;
SELECT recall.recall('messages', 1, 'alice');
SELECT id, body, meta, attachment, recalled_at = now() AS at_xact_time,
       recalled_by, recall_reason
FROM messages WHERE id = 1;
SELECT xid = pg_current_xact_id() AS same_xact FROM recall.events
WHERE tbl = 'messages'::regclass;
COMMIT;
SELECT recall.recall('messages', 1, 'alice');
-- the key is cast to the key's type
SELECT recall.recall('messages', '7'::text, 'alice');
SELECT recall.recall('messages', 7::smallint, 'alice');
SELECT recall.recall('messages', 7::numeric, 'alice');

------------------------------------------------------------------------
-- plain UPDATE: the client's recalled_at is replaced by the
-- transaction's time
------------------------------------------------------------------------
BEGIN;
UPDATE messages SET recalled_at = '1999-12-31 23:59:59+00', recalled_by = 'bob'
WHERE id = 2;
SELECT id, body, meta, attachment, recalled_at = now() AS at_xact_time, recalled_by
FROM messages WHERE id = 2;
COMMIT;
-- infinity too
UPDATE messages SET recalled_at = 'infinity', recalled_by = 'bob' WHERE id = 8;
SELECT id, body, recalled_at <> 'infinity' AS not_infinity FROM messages WHERE id = 8;

-- an UPDATE that writes new content and recalls in one statement: the
-- content is wiped all the same
UPDATE messages SET body = 'replacement text', meta = '{"x": 1}',
                    recalled_at = now(), recalled_by = 'carol'
WHERE id = 3;
SELECT id, body, meta, attachment FROM messages WHERE id = 3;

------------------------------------------------------------------------
-- UPDATE ... FROM, with the actor from the recall.actor setting
------------------------------------------------------------------------
BEGIN;
SET LOCAL recall.actor = 'dave';
UPDATE messages m SET recalled_at = now()
FROM (VALUES (4::bigint)) AS v(id)
WHERE m.id = v.id;
SELECT id, body, meta, attachment, recalled_at = now() AS at_xact_time, recalled_by
FROM messages WHERE id = 4;
COMMIT;

------------------------------------------------------------------------
-- MERGE
------------------------------------------------------------------------
MERGE INTO messages m
USING (VALUES (5::bigint, 'erin')) AS s(id, who) ON m.id = s.id
WHEN MATCHED THEN UPDATE SET recalled_at = now(), recalled_by = s.who
WHEN NOT MATCHED THEN DO NOTHING;
SELECT id, body, meta, attachment, recalled_at IS NOT NULL AS recalled, recalled_by
FROM messages WHERE id = 5;

------------------------------------------------------------------------
-- INSERT ... ON CONFLICT DO UPDATE
------------------------------------------------------------------------
INSERT INTO messages (id, conversation_id, sender, sent_at, body)
VALUES (6, 2, 'frank', now(), 'upserted text')
ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, recalled_at = now(),
                               recalled_by = EXCLUDED.sender;
SELECT id, body, meta, attachment, recalled_at IS NOT NULL AS recalled, recalled_by
FROM messages WHERE id = 6;

------------------------------------------------------------------------
-- recall.recall_sender: an admin's bulk recall of one author, in
-- [since, until)
------------------------------------------------------------------------
-- message i was sent at 12:00 + i minutes; carol wrote 3 and 9, dave 4
-- and 10, and 3 and 4 are recalled already
SET recall.actor = 'moderator';
SELECT id, sender, sent_at, recalled_at IS NOT NULL AS recalled
FROM messages WHERE sender IN ('carol', 'dave') ORDER BY id;
-- since is included, until is excluded: [12:09, 12:10) takes carol's 9 only
SELECT recall.recall_sender('messages', 'carol', 'spam wave',
                            since => '2024-01-01 12:09:00+00',
                            until => '2024-01-01 12:10:00+00');
SELECT recall.recall_sender('messages', 'dave', 'spam wave',
                            since => '2024-01-01 12:10:00+00',
                            until => '2024-01-01 12:10:00+00');
-- no range: every message of dave not yet recalled
SELECT recall.recall_sender('messages', 'dave', 'spam wave');
SELECT recall.recall_sender('messages', 'dave', 'spam wave');
RESET recall.actor;
SELECT id, sender, body, recalled_at IS NOT NULL AS recalled, recalled_by, recall_reason
FROM messages ORDER BY id;

-- the events of every recall above, one each, in order
SELECT * FROM pg_temp.recalled('messages');
-- admin power (the superuser's) was used by recall_sender only
SELECT pk, actor, reason, action, db_role = current_user AS db_role_ok
FROM recall.audit WHERE tbl = 'messages'::regclass ORDER BY (pk->>'id')::int;
-- the view shows what is left
SELECT id, sender, body FROM messages_visible ORDER BY id;

-- RETURNING shows the row as stored: wiped, stamped
UPDATE messages SET recalled_at = now(), recalled_by = 'erin' WHERE id = 11
RETURNING id, body, meta, attachment, recalled_at = now() AS at_xact_time, recalled_by;

------------------------------------------------------------------------
-- recall_sender over epoch milliseconds: [since, until) to the
-- millisecond
------------------------------------------------------------------------
CREATE TABLE ms_posts (id int PRIMARY KEY, userid text NOT NULL, createat bigint NOT NULL,
                       message text);
INSERT INTO ms_posts VALUES
    (1, 'spammer', 1704067200000, 'at 00:00:00.000'),
    (2, 'spammer', 1704067200001, 'at 00:00:00.001'),
    (3, 'spammer', 1704067200002, 'at 00:00:00.002'),
    (4, 'spammer', 1704067200003, 'at 00:00:00.003'),
    (5, 'someone', 1704067200002, 'not the spammer');
SELECT recall.enable('ms_posts', '{message}', sender => 'userid', sent_at => 'createat',
                     sent_at_unit => 'ms');
SELECT recall.recall_sender('ms_posts', 'spammer', 'spam',
                            since => '2024-01-01 00:00:00.001+00',
                            until => '2024-01-01 00:00:00.003+00');
SELECT id, message, recalled_at IS NOT NULL AS recalled FROM ms_posts ORDER BY id;

------------------------------------------------------------------------
-- A partitioned table, with a composite key, and a partition created
-- after enable.
------------------------------------------------------------------------
CREATE TABLE pmsgs (
    room    int NOT NULL,
    id      int NOT NULL,
    sender  text NOT NULL,
    body    text,
    doc     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (room, id)
) PARTITION BY LIST (room);
CREATE TABLE pmsgs_1 PARTITION OF pmsgs FOR VALUES IN (1);
-- a partition whose columns are in another order
CREATE TABLE pmsgs_2 (doc jsonb NOT NULL DEFAULT '{}', body text, sender text NOT NULL,
                      id int NOT NULL, room int NOT NULL);
ALTER TABLE pmsgs ATTACH PARTITION pmsgs_2 FOR VALUES IN (2);
SELECT recall.enable('pmsgs', '{body,doc}', sender => 'sender', conversation => 'room');
CREATE TABLE pmsgs_3 PARTITION OF pmsgs FOR VALUES IN (3);
INSERT INTO pmsgs (room, id, sender, body, doc)
SELECT r, i, 'alice', format('room %s msg %s', r, i), jsonb_build_object('t', r * 10 + i)
FROM generate_series(1, 3) AS r, generate_series(1, 4) AS i;
-- every partition has the guard trigger (no CHECK)
SELECT c.relname, count(DISTINCT t.tgname) AS triggers,
       bool_or(k.conname = 'recall_wiped') AS has_check
FROM pg_class c
LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname LIKE '~recall%'
LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'c'
WHERE c.relname LIKE 'pmsgs%' AND c.relkind IN ('r', 'p')
GROUP BY c.relname ORDER BY c.relname;

-- recall.recall with a jsonb key, on each partition
SELECT recall.recall('pmsgs', '{"room": 1, "id": 1}'::jsonb, 'alice');
SELECT recall.recall('pmsgs', '{"id": 1, "room": 2}'::jsonb, 'alice');
SELECT recall.recall('pmsgs', '{"room": 3, "id": 1}'::jsonb, 'alice');
SELECT recall.recall('pmsgs', '{"room": 3, "id": 1}'::jsonb, 'alice');
-- key values given as strings are cast to the key's types
SELECT recall.recall('pmsgs', '{"room": "3", "id": "2"}'::jsonb, 'alice');
-- UPDATE through the parent, and directly on the late partition
UPDATE pmsgs SET recalled_at = now(), recalled_by = 'alice' WHERE room = 2 AND id = 2;
UPDATE pmsgs_3 SET recalled_at = now(), recalled_by = 'alice' WHERE id = 3;
-- UPDATE ... FROM and MERGE on the partitioned table
UPDATE pmsgs p SET recalled_at = now(), recalled_by = 'alice'
FROM (VALUES (1, 2)) AS v(room, id) WHERE p.room = v.room AND p.id = v.id;
MERGE INTO pmsgs p USING (VALUES (2, 3)) AS s(room, id)
ON p.room = s.room AND p.id = s.id
WHEN MATCHED THEN UPDATE SET recalled_at = now(), recalled_by = 'alice';
-- ON CONFLICT on the partitioned table
INSERT INTO pmsgs (room, id, sender, body) VALUES (1, 3, 'alice', 'again')
ON CONFLICT (room, id) DO UPDATE SET recalled_at = now(), recalled_by = 'alice';
-- an UPDATE that recalls and moves the row to another partition
UPDATE pmsgs SET room = 3, id = 40, recalled_at = now(), recalled_by = 'alice'
WHERE room = 2 AND id = 4;
SELECT tableoid::regclass AS part, room, id, body, doc,
       recalled_at IS NOT NULL AS recalled, recalled_by
FROM pmsgs ORDER BY room, id;
-- one event per recall, all on the partitioned table itself
SELECT tbl, pk, conversation, actor, privileged
FROM recall.events WHERE tbl IN ('pmsgs'::regclass, 'pmsgs_1'::regclass,
                                 'pmsgs_2'::regclass, 'pmsgs_3'::regclass)
ORDER BY seq;
SELECT room, id FROM pmsgs_visible ORDER BY room, id;

------------------------------------------------------------------------
-- A composite key of other types, given as a jsonb object.
------------------------------------------------------------------------
CREATE TABLE tenant_msgs (
    tenant  uuid NOT NULL,
    day     date NOT NULL,
    n       int NOT NULL,
    body    bytea,
    PRIMARY KEY (tenant, day, n)
);
INSERT INTO tenant_msgs VALUES
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', 1, '\x00ff'),
    ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-02-29', 2, '\x01ff');
SELECT recall.enable('tenant_msgs', '{body}');
SELECT recall.recall('tenant_msgs',
                     '{"tenant": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "day": "2024-02-29", "n": 2}'::jsonb,
                     reason => 'tenant request');
SELECT n, body, recalled_at IS NOT NULL AS recalled, recall_reason FROM tenant_msgs ORDER BY n;
SELECT pk, privileged, reason FROM recall.events WHERE tbl = 'tenant_msgs'::regclass;

-- A single-column key of type uuid: the id is cast from text.
CREATE TABLE uuid_msgs (id uuid PRIMARY KEY, body text);
INSERT INTO uuid_msgs VALUES ('00000000-0000-0000-0000-000000000001', 'x');
SELECT recall.enable('uuid_msgs', '{body}');
SELECT recall.recall('uuid_msgs', '00000000-0000-0000-0000-000000000001'::text, reason => 'r');
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM uuid_msgs;

SET client_min_messages = warning;
DROP TABLE messages, ms_posts, pmsgs, tenant_msgs, uuid_msgs CASCADE;
RESET client_min_messages;
