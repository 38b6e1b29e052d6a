-- pg_recall bench: the messages table, loaded identically into the
-- "plain" database (then copied as the template of "enabled").
-- 1M rows, ~80 messages per conversation (12500 conversations), every
-- message sent by the bench role so that a recall by it is a self-recall.
-- The recall columns exist up front: the baseline UPDATE sets them, and
-- recall.enable() uses columns that are already there, so both tables
-- have the same physical layout.
\set ON_ERROR_STOP 1
SET synchronous_commit = off;

CREATE TABLE messages (
    id            bigint PRIMARY KEY,
    conversation  bigint NOT NULL,
    sender        text NOT NULL,
    created_at    timestamptz NOT NULL,
    body          text,
    attachment    text,
    reactions     integer NOT NULL DEFAULT 0,
    recalled_at   timestamptz,
    recalled_by   text,
    recall_reason text
);

INSERT INTO messages (id, conversation, sender, created_at, body, attachment)
SELECT i,
       1 + abs(hashint8(i)::bigint) % :conversations,
       'bench',
       now() - interval '1 second' * (:rows - i),
       md5(i::text) || ' ' || left('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore', 40 + (i % 60)),
       CASE WHEN i % 10 = 0 THEN 'https://files.example/' || md5((-i)::text) || '.jpg' END
FROM generate_series(1, :rows) AS i;

CREATE INDEX messages_conversation_id_idx ON messages (conversation, id);

-- ids for inserted messages, and the ids a recall run takes one by one
CREATE SEQUENCE msg_ids START 100000001;
CREATE SEQUENCE bench_ids START 1;

VACUUM (ANALYZE, FREEZE) messages;
