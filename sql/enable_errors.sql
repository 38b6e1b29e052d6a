--
-- enable_errors: every bad input to recall.enable(), recall.disable(),
-- recall.recall() and recall.recall_sender(), each with its SQLSTATE, and
-- proof that nothing was left half done.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

-- Everything pg_recall could have put on a table, one line per object.
CREATE FUNCTION pg_temp.shape(t regclass) RETURNS SETOF text
LANGUAGE sql AS $$
    SELECT s FROM (
        SELECT 'column ' || quote_ident(a.attname) || ' '
               || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS s
        FROM pg_attribute a
        WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'trigger ' || g.tgname FROM pg_trigger g
        WHERE g.tgrelid = t AND NOT g.tgisinternal
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
        UNION ALL
        SELECT 'statistics ' || a.attname || ' ' || a.attstattarget
        FROM pg_attribute a
        WHERE a.attrelid = t AND a.attnum > 0 AND NOT a.attisdropped AND a.attstattarget <> -1
    ) x ORDER BY s COLLATE "C"
$$;

CREATE SEQUENCE msgs_counter;
CREATE TABLE msgs (
    id       bigint PRIMARY KEY,
    sender   text,
    sent_at  timestamptz,
    epoch_s  bigint,
    room     text,
    body     text,
    score    int NOT NULL,
    stamp    timestamptz NOT NULL DEFAULT now(),
    counter  bigint NOT NULL DEFAULT nextval('msgs_counter')
);
INSERT INTO msgs (id, sender, sent_at, room, body, score)
VALUES (1, 'alice', now(), 'r', 'hello', 1);
SELECT pg_temp.shape('msgs');

------------------------------------------------------------------------
-- recall.enable
------------------------------------------------------------------------
-- no primary key, no replica identity index: 42P16 with a HINT naming both
CREATE TABLE nokey (id int, body text);
CREATE UNIQUE INDEX nokey_id ON nokey (id);   -- unique, but not the replica identity
SELECT recall.enable('nokey', '{body}');
\echo :SQLSTATE
SELECT pg_temp.shape('nokey');
DROP TABLE nokey;

-- unknown columns: 42703, whatever option names them
SELECT recall.enable('msgs', '{body,no_such_column}');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{"Body"}');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{"body; DROP TABLE msgs"}');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'author');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sent_at => 'created');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', conversation => 'conv');
\echo :SQLSTATE

-- a content column in the key: 22023
SELECT recall.enable('msgs', '{body,id}');
\echo :SQLSTATE

-- empty or missing content list: 22023
SELECT recall.enable('msgs', '{}');
\echo :SQLSTATE
SELECT recall.enable('msgs', NULL);
\echo :SQLSTATE

-- NOT NULL content column of a type without an empty value and without a
-- constant DEFAULT: 22023 with a HINT
SELECT recall.enable('msgs', '{body,score}');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body,stamp}');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body,counter}');
\echo :SQLSTATE

-- integer sent_at without a unit, a unit on a timestamp, a bad unit, a
-- sent_at of a type that is no time: 22023
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'epoch_s');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'sent_at',
                     sent_at_unit => 's');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'epoch_s',
                     sent_at_unit => 'us');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'room');
\echo :SQLSTATE

-- a window needs both sender and sent_at, and must not be negative: 22023
SELECT recall.enable('msgs', '{body}', sent_at => 'sent_at', recall_window => '1 hour');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', recall_window => '1 hour');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'sent_at',
                     recall_window => '-5 minutes');
\echo :SQLSTATE

-- bad on_recalled_write, bad channel: 22023
SELECT recall.enable('msgs', '{body}', on_recalled_write => 'ignore');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', channel => '');
\echo :SQLSTATE

-- an existing recall column of another type: refused, nothing added
ALTER TABLE msgs ADD COLUMN recalled_at text;
SELECT recall.enable('msgs', '{body}');
\echo :SQLSTATE
ALTER TABLE msgs DROP COLUMN recalled_at;

-- not a table: 42809
CREATE VIEW msgs_view AS SELECT * FROM msgs;
SELECT recall.enable('msgs_view', '{body}');
\echo :SQLSTATE
DROP VIEW msgs_view;

-- after all of that, msgs is exactly as it was
SELECT pg_temp.shape('msgs');

------------------------------------------------------------------------
-- only the owner (or a superuser) may enable or disable: 42501
------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_enable_errors_other;
RESET client_min_messages;
CREATE ROLE regress_enable_errors_other;
GRANT SELECT, UPDATE ON msgs TO regress_enable_errors_other;
SET ROLE regress_enable_errors_other;
SELECT recall.enable('msgs', '{body}');
\echo :SQLSTATE
RESET ROLE;
SELECT pg_temp.shape('msgs');

-- enable as the owner, then the other role may not disable or change it
SELECT recall.enable('msgs', '{body}', sender => 'sender', sent_at => 'sent_at');
SET ROLE regress_enable_errors_other;
SELECT recall.disable('msgs');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body,room}');
\echo :SQLSTATE
RESET ROLE;
SELECT pg_temp.shape('msgs');

------------------------------------------------------------------------
-- bad input to a re-enable leaves the enabled table as it was
------------------------------------------------------------------------
SELECT recall.enable('msgs', '{body,nope}', sender => 'sender');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body,score}', sender => 'sender');
\echo :SQLSTATE
SELECT recall.enable('msgs', '{body}', sender => 'sender', recall_window => '1 hour');
\echo :SQLSTATE
SELECT pg_temp.shape('msgs');
-- and it still works
SELECT recall.recall('msgs', 1, 'alice');
SELECT id, body, recalled_by FROM msgs;

------------------------------------------------------------------------
-- recall.recall and recall.recall_sender
------------------------------------------------------------------------
CREATE TABLE plain (id int PRIMARY KEY, sender text, body text);
INSERT INTO plain VALUES (1, 'alice', 'x');
-- a table that is not enabled: 55000
SELECT recall.recall('plain', 1, 'alice');
\echo :SQLSTATE
SELECT recall.recall_sender('plain', 'alice', 'spam');
\echo :SQLSTATE
SELECT recall.disable('plain');
\echo :SQLSTATE
SELECT * FROM plain;

-- no such message: P0002
SELECT recall.recall('msgs', 42, 'alice');
\echo :SQLSTATE
-- an id that does not cast to the key's type
SELECT recall.recall('msgs', 'not a number'::text, 'alice');
\echo :SQLSTATE
SELECT recall.recall('msgs', '2001-01-01'::date, 'alice');
\echo :SQLSTATE
-- a NULL id or table
SELECT recall.recall('msgs', NULL::bigint, 'alice');
\echo :SQLSTATE
SELECT recall.recall(NULL, 1, 'alice');
\echo :SQLSTATE

-- composite keys take a jsonb object naming every key column
CREATE TABLE room_msgs (room text, n int, body text, PRIMARY KEY (room, n));
INSERT INTO room_msgs VALUES ('r1', 1, 'x');
SELECT recall.enable('room_msgs', '{body}');
SELECT recall.recall('room_msgs', '{"room": "r1"}'::jsonb, reason => 'test');
\echo :SQLSTATE
SELECT recall.recall('room_msgs', '{"room": "r1", "n": "one"}'::jsonb, reason => 'test');
\echo :SQLSTATE
SELECT recall.recall('room_msgs', '["r1", 1]'::jsonb, reason => 'test');
\echo :SQLSTATE
SELECT recall.recall('room_msgs', 'r1'::text, reason => 'test');
\echo :SQLSTATE
SELECT recall.recall('room_msgs', '{"room": "r1", "n": 2}'::jsonb, reason => 'test');
\echo :SQLSTATE
SELECT room, n, body, recalled_at IS NOT NULL AS recalled FROM room_msgs;

-- recall_sender needs a sender column, and a sent_at column for a range
SELECT recall.recall_sender('room_msgs', 'alice', 'spam');
\echo :SQLSTATE
CREATE TABLE nosent (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('nosent', '{body}', sender => 'sender');
SELECT recall.recall_sender('nosent', 'alice', 'spam', since => now() - interval '1 day');
\echo :SQLSTATE

-- nothing above wrote an event but the one successful recall of msgs
SELECT tbl, pk, actor FROM recall.events
WHERE tbl IN ('plain'::regclass, 'msgs'::regclass, 'room_msgs'::regclass, 'nosent'::regclass)
ORDER BY seq;

SET client_min_messages = warning;
DROP TABLE plain, msgs, room_msgs, nosent CASCADE;
RESET client_min_messages;
DROP SEQUENCE msgs_counter;
DROP ROLE regress_enable_errors_other;
