--
-- notify: the notification of a recall, as a listener on another
-- connection receives it (through dblink): one per statement, sent at
-- commit, JSON under 8000 bytes, never content nor reason.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dblink;
RESET client_min_messages;

-- a second connection to this database listens
SELECT dblink_connect('listener',
       format('dbname=%s user=%s port=%s host=%s', current_database(), current_user,
              current_setting('port'),
              coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                       'localhost')));

CREATE TEMP TABLE got (n serial, channel text, payload text);
-- The notifications the listener has received: waits up to 10 seconds for
-- the expected number, then a little longer for any unexpected extra one.
CREATE FUNCTION pg_temp.received(expected int) RETURNS TABLE (channel text, payload text)
LANGUAGE plpgsql AS $$
DECLARE
    n       int := 0;
    waited  int := 0;
    r       record;
BEGIN
    TRUNCATE got;
    LOOP
        FOR r IN SELECT * FROM dblink_get_notify('listener') LOOP
            INSERT INTO got (channel, payload) VALUES (r.notify_name, r.extra);
            n := n + 1;
        END LOOP;
        EXIT WHEN (n >= expected AND waited >= 20) OR waited >= 1000;
        PERFORM pg_sleep(0.01);
        waited := waited + 1;
    END LOOP;
    RETURN QUERY SELECT g.channel, g.payload FROM got g ORDER BY g.n;
END $$;

CREATE TABLE nmsgs (
    id      bigint PRIMARY KEY,
    conv    text NOT NULL,
    sender  text NOT NULL,
    body    text
);
INSERT INTO nmsgs SELECT i, 'conv-' || (i % 3), 'alice', 'secret text ' || i
FROM generate_series(1, 20) AS i;
SELECT recall.enable('nmsgs', '{body}', sender => 'sender', conversation => 'conv',
                     channel => 'recall nt');
SELECT dblink_exec('listener', 'LISTEN "recall nt"');

------------------------------------------------------------------------
-- One message: {"v":1,"op":"recall","table":...,"pk":...,"conversation":
-- ...,"seq":...,"at":...}, seq and at those of its event
------------------------------------------------------------------------
SELECT recall.recall('nmsgs', 4, 'alice', 'my reason is private');
CREATE TEMP TABLE single AS SELECT * FROM pg_temp.received(1);
SELECT channel, payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at,
       octet_length(payload) < 8000 AS fits
FROM single;
SELECT (s.payload::jsonb ->> 'seq')::bigint = e.seq AS seq_is_events,
       (s.payload::jsonb ->> 'at')::timestamptz = e.recalled_at AS at_is_recalled_at,
       (s.payload::jsonb ->> 'at')::timestamptz = m.recalled_at AS at_is_row,
       jsonb_typeof(s.payload::jsonb -> 'seq') AS seq_type,
       jsonb_typeof(s.payload::jsonb -> 'at') AS at_type
FROM single s, recall.events e, nmsgs m
WHERE e.tbl = 'nmsgs'::regclass AND e.pk = '{"id": 4}' AND m.id = 4;
-- neither content nor reason travels
SELECT position('secret' IN payload) = 0 AS no_content,
       position('private' IN payload) = 0 AS no_reason
FROM single;
-- the key order and layout of the spec's example
SELECT regexp_replace(payload, '"seq":[0-9]+,"at":"[^"]+"', '"seq":<seq>,"at":"<at>"') AS layout
FROM single;

------------------------------------------------------------------------
-- Several messages in one statement: one recall_bulk payload
------------------------------------------------------------------------
UPDATE nmsgs SET recalled_at = now(), recalled_by = 'alice' WHERE conv = 'conv-1';
CREATE TEMP TABLE bulk AS SELECT * FROM pg_temp.received(1);
SELECT channel, payload::jsonb - 'first_seq' - 'last_seq' AS payload_without_seqs,
       position('secret' IN payload) = 0 AS no_content
FROM bulk;
SELECT (b.payload::jsonb ->> 'first_seq')::bigint = min(e.seq) AS first_seq_ok,
       (b.payload::jsonb ->> 'last_seq')::bigint = max(e.seq) AS last_seq_ok,
       count(*) AS events
FROM bulk b, recall.events e, nmsgs m
WHERE e.tbl = 'nmsgs'::regclass AND e.pk = jsonb_build_object('id', m.id)
  AND m.conv = 'conv-1' AND m.id <> 4
GROUP BY b.payload;
-- the admin's bulk recall is one statement too
UPDATE nmsgs SET sender = 'bob' WHERE id IN (2, 5, 8);
SELECT recall.recall_sender('nmsgs', 'bob', 'spam');
SELECT payload::jsonb - 'first_seq' - 'last_seq' AS payload_without_seqs
FROM pg_temp.received(1);

------------------------------------------------------------------------
-- Nothing for what is no recall
------------------------------------------------------------------------
UPDATE nmsgs SET recalled_at = now(), recalled_by = 'alice' WHERE conv = 'conv-1';
UPDATE nmsgs SET conv = conv;
SELECT count(*) AS notifications FROM pg_temp.received(0);

------------------------------------------------------------------------
-- Sent at commit: nothing while the transaction is open, nothing after a
-- rollback, one per statement after a commit
------------------------------------------------------------------------
BEGIN;
SELECT recall.recall('nmsgs', 3, 'alice');
SELECT count(*) AS before_commit FROM pg_temp.received(0);
ROLLBACK;
SELECT count(*) AS after_rollback FROM pg_temp.received(0);
BEGIN;
SELECT recall.recall('nmsgs', 3, 'alice');
UPDATE nmsgs SET recalled_at = now(), recalled_by = 'alice' WHERE id IN (6, 9);
SELECT count(*) AS before_commit FROM pg_temp.received(0);
COMMIT;
SELECT payload::jsonb ->> 'op' AS op, payload::jsonb -> 'pk' AS pk,
       payload::jsonb -> 'count' AS count
FROM pg_temp.received(2);

------------------------------------------------------------------------
-- A key too large for a notification: the bulk form, never an error
------------------------------------------------------------------------
CREATE TABLE big_keys (id text PRIMARY KEY, body text);
INSERT INTO big_keys VALUES (repeat('k', 9000), 'secret of a big key'), ('small', 'x');
SELECT recall.enable('big_keys', '{body}', channel => 'recall nt');
SELECT recall.recall('big_keys', repeat('k', 9000), reason => 'too big');
SELECT payload::jsonb - 'first_seq' - 'last_seq' AS payload_without_seqs,
       octet_length(payload) < 8000 AS fits
FROM pg_temp.received(1);
SELECT recall.recall('big_keys', 'small'::text, reason => 'small');
SELECT payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at
FROM pg_temp.received(1);

------------------------------------------------------------------------
-- A composite key, and a partitioned table with a partition created after
-- enable: the table named is the enabled one
------------------------------------------------------------------------
CREATE TABLE room_msgs (
    room    int NOT NULL,
    n       int NOT NULL,
    body    text,
    PRIMARY KEY (room, n)
) PARTITION BY LIST (room);
CREATE TABLE room_msgs_1 PARTITION OF room_msgs FOR VALUES IN (1);
SELECT recall.enable('room_msgs', '{body}', conversation => 'room', channel => 'recall nt');
CREATE TABLE room_msgs_2 PARTITION OF room_msgs FOR VALUES IN (2);
INSERT INTO room_msgs VALUES (1, 1, 'a'), (2, 1, 'b'), (2, 2, 'c'), (2, 3, 'd');
SELECT recall.recall('room_msgs', '{"room": 1, "n": 1}'::jsonb, reason => 'r');
SELECT payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at
FROM pg_temp.received(1);
UPDATE room_msgs SET recalled_at = now(), recall_reason = 'r' WHERE room = 2 AND n = 1;
SELECT payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at
FROM pg_temp.received(1);
-- an UPDATE of the partition itself
UPDATE room_msgs_2 SET recalled_at = now(), recall_reason = 'r' WHERE n = 2;
SELECT payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at
FROM pg_temp.received(1);

-- an UPDATE that recalls and moves the row to another partition is refused
-- (a row move is a DELETE and an INSERT: no event could be logged)
UPDATE room_msgs SET room = 1, n = 30, recalled_at = now(), recall_reason = 'r'
WHERE room = 2 AND n = 3;
SELECT payload::jsonb - 'seq' - 'at' AS payload_without_seq_and_at
FROM pg_temp.received(0);

SELECT dblink_disconnect('listener');
SET client_min_messages = warning;
DROP TABLE nmsgs, big_keys, room_msgs CASCADE;
DROP EXTENSION dblink;
RESET client_min_messages;
