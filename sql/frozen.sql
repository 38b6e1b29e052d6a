--
-- frozen: a recalled row stays recalled, while the updates real
-- applications make to it (flags, reactions, backfills, ORM saves, their
-- own derived-column triggers) go through.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

CREATE TABLE msgs (
    id        int PRIMARY KEY,
    conv      int NOT NULL,
    sender    text NOT NULL,
    body      text,
    html      text,
    tsv       tsvector,
    is_read   boolean NOT NULL DEFAULT false,
    reactions int NOT NULL DEFAULT 0,
    note      text
);
-- the application's own trigger keeps rendered HTML and a search vector
-- in step with the text, on every INSERT and UPDATE
CREATE FUNCTION msgs_derive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.html := '<p>' || NEW.body || '</p>';
    NEW.tsv := to_tsvector('simple', coalesce(NEW.body, ''));
    RETURN NEW;
END $$;
CREATE TRIGGER msgs_derive BEFORE INSERT OR UPDATE ON msgs
    FOR EACH ROW EXECUTE FUNCTION msgs_derive();
INSERT INTO msgs (id, conv, sender, body)
SELECT i, CASE WHEN i <= 4 THEN 1 ELSE 2 END, 'alice', 'secret number ' || i
FROM generate_series(1, 6) AS i;
SELECT recall.enable('msgs', '{body,html,tsv}', sender => 'sender', conversation => 'conv');

-- the row as it is now, and how many events it has
CREATE FUNCTION pg_temp.msgs() RETURNS TABLE (
    id int, conv int, body text, html text, tsv tsvector, is_read boolean,
    reactions int, note text, recalled boolean, first_recall_stands boolean,
    recalled_by text, recall_reason text, events bigint)
LANGUAGE sql AS $$
    SELECT m.id, m.conv, m.body, m.html, m.tsv, m.is_read, m.reactions, m.note,
           m.recalled_at IS NOT NULL,
           m.recalled_at = (SELECT min(e.recalled_at) FROM recall.events e
                            WHERE e.tbl = 'msgs'::regclass AND e.pk = jsonb_build_object('id', m.id)),
           m.recalled_by, m.recall_reason,
           (SELECT count(*) FROM recall.events e
            WHERE e.tbl = 'msgs'::regclass AND e.pk = jsonb_build_object('id', m.id))
    FROM msgs m ORDER BY m.id
$$;

-- the recall wipes what the application's trigger derived, too
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice', recall_reason = 'typo'
WHERE id IN (1, 2);
SELECT * FROM pg_temp.msgs();

------------------------------------------------------------------------
-- A repeated recall is a no-op: the first recall stands, no new event
------------------------------------------------------------------------
UPDATE msgs SET recalled_at = now() + interval '1 day', recalled_by = 'moderator',
                recall_reason = 'again'
WHERE id = 1;
SELECT recall.recall('msgs', 1, 'alice');
-- a bulk recall of conversation 1 recalls 3 and 4 and leaves 1 and 2 be
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE conv = 1;
SELECT * FROM pg_temp.msgs();

------------------------------------------------------------------------
-- Un-recall, or a change of recalled_by or recall_reason: 55000
------------------------------------------------------------------------
UPDATE msgs SET recalled_at = NULL WHERE id = 1;
\echo :SQLSTATE
UPDATE msgs SET recalled_at = NULL, body = 'secret number 1' WHERE id = 1;
\echo :SQLSTATE
UPDATE msgs SET recalled_by = 'mallory' WHERE id = 1;
\echo :SQLSTATE
UPDATE msgs SET recalled_by = NULL WHERE id = 1;
\echo :SQLSTATE
UPDATE msgs SET recall_reason = 'another reason' WHERE id = 1;
\echo :SQLSTATE
-- a whole statement fails, not only the recalled row
UPDATE msgs SET recall_reason = 'bulk edit' WHERE conv = 1;
\echo :SQLSTATE

------------------------------------------------------------------------
-- An edit of a recalled row's content: 55000
------------------------------------------------------------------------
UPDATE msgs SET body = 'secret number 1' WHERE id = 1;
\echo :SQLSTATE
-- html is derived from body by the application's trigger, which runs
-- before the guard: the row as it would be stored keeps html wiped, so
-- this is no edit
UPDATE msgs SET html = '<p>secret</p>' WHERE id = 1;
\echo :SQLSTATE
SELECT id, body, html FROM msgs WHERE id = 1;
-- a batch edit that touches a recalled row fails as a whole
UPDATE msgs SET body = coalesce(body, '') || ' (edited)' WHERE conv = 2 OR id = 1;
\echo :SQLSTATE
SELECT * FROM pg_temp.msgs();

------------------------------------------------------------------------
-- Updates that leave the content as it is go through
------------------------------------------------------------------------
-- a read flag and a reaction (the application's trigger recomputes its
-- derived columns from the wiped text: they stay wiped)
UPDATE msgs SET is_read = true WHERE id = 1;
UPDATE msgs SET reactions = reactions + 1 WHERE id = 1;
-- writing the wiped value itself
UPDATE msgs SET body = NULL, note = 'cleared' WHERE id = 1;
-- a batch flag over a conversation that includes recalled rows
UPDATE msgs SET is_read = true WHERE conv = 1;
-- a backfill of a new column over the whole table
ALTER TABLE msgs ADD COLUMN lang text;
UPDATE msgs SET lang = 'en';
SELECT * FROM pg_temp.msgs();
SELECT count(*) FILTER (WHERE lang = 'en') AS backfilled FROM msgs;

-- an ORM saving every column of the row as it read it
UPDATE msgs m SET (conv, sender, body, html, tsv, is_read, reactions, note,
                   recalled_at, recalled_by, recall_reason)
    = (SELECT conv, sender, body, html, tsv, false, reactions, 'saved by the ORM',
              recalled_at, recalled_by, recall_reason
       FROM msgs WHERE id = m.id)
WHERE id = 2;
-- the same, through the client: values read as text and sent back as text
-- (\gset leaves a variable unset for NULL: read NULL as '')
SELECT id, conv, sender, coalesce(body, '') AS body, coalesce(html, '') AS html,
       coalesce(tsv::text, '') AS tsv, reactions, recalled_at, recalled_by, recall_reason
FROM msgs WHERE id = 2 \gset orm_
UPDATE msgs SET conv = :'orm_conv', sender = :'orm_sender', body = NULLIF(:'orm_body', ''),
                html = NULLIF(:'orm_html', ''), tsv = NULLIF(:'orm_tsv', '')::tsvector,
                is_read = true, reactions = :'orm_reactions', note = 'saved as text',
                recalled_at = :'orm_recalled_at', recalled_by = :'orm_recalled_by',
                recall_reason = :'orm_recall_reason'
WHERE id = :'orm_id';
SELECT * FROM pg_temp.msgs() WHERE id = 2;

------------------------------------------------------------------------
-- DELETE stays allowed
------------------------------------------------------------------------
DELETE FROM msgs WHERE id = 4;
SELECT id FROM msgs ORDER BY id;

------------------------------------------------------------------------
-- on_recalled_write => 'keep_wiped': a job that rewrites whole rows
-- keeps working, and the content stays wiped
------------------------------------------------------------------------
CREATE TABLE indexed (
    id      int PRIMARY KEY,
    sender  text,
    body    text,
    summary text NOT NULL DEFAULT '',
    indexed boolean NOT NULL DEFAULT false
);
INSERT INTO indexed (id, sender, body, summary) VALUES
    (1, 'alice', 'first text', 'first'), (2, 'alice', 'second text', 'second');
SELECT recall.enable('indexed', '{body,summary}', sender => 'sender',
                     on_recalled_write => 'keep_wiped');
SELECT on_recalled_write FROM recall.tables WHERE tbl = 'indexed'::regclass;
SELECT recall.recall('indexed', 1, 'alice');
-- the indexer's batch: rewrites every row's derived column from a stale copy
UPDATE indexed SET summary = 'stale copy of row ' || id, body = 'stale text ' || id,
                   indexed = true;
SELECT id, body, summary, indexed, recalled_at IS NOT NULL AS recalled FROM indexed ORDER BY id;
-- un-recall and a change of the recall columns are still refused
UPDATE indexed SET recalled_at = NULL WHERE id = 1;
\echo :SQLSTATE
UPDATE indexed SET recalled_by = 'mallory', body = 'x' WHERE id = 1;
\echo :SQLSTATE
SELECT count(*) AS events FROM recall.events WHERE tbl = 'indexed'::regclass;

------------------------------------------------------------------------
-- The invariant holds where no recall is processed
-- (session_replication_role = replica, as a logical replication
-- subscriber applies changes); the error names the column, never
-- the content
------------------------------------------------------------------------
SET session_replication_role = replica;
\set VERBOSITY terse
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice' WHERE id = 5;
\echo :SQLSTATE
INSERT INTO msgs (id, conv, sender, body, recalled_at, recalled_by)
VALUES (100, 2, 'alice', 'secret', now(), 'alice');
\echo :SQLSTATE
\set VERBOSITY default
-- the publisher's already wiped rows apply
UPDATE msgs SET recalled_at = now(), recalled_by = 'alice', body = NULL, html = NULL, tsv = NULL
WHERE id = 5;
INSERT INTO msgs (id, conv, sender, body, recalled_at, recalled_by)
VALUES (100, 2, 'alice', NULL, now(), 'alice');
RESET session_replication_role;
SELECT * FROM pg_temp.msgs() WHERE id IN (5, 100);

------------------------------------------------------------------------
-- Inserting an already recalled row: only with wiped content
------------------------------------------------------------------------
\set VERBOSITY terse
INSERT INTO msgs (id, conv, sender, body, recalled_at, recalled_by)
VALUES (101, 2, 'alice', 'secret', now(), 'alice');
\echo :SQLSTATE
\set VERBOSITY default
-- (msgs_derive fills html and tsv from the text on INSERT, and there is
-- no wipe on INSERT: the guard only checks the invariant)
DROP TRIGGER msgs_derive ON msgs;
INSERT INTO msgs (id, conv, sender, body, recalled_at, recalled_by)
VALUES (101, 2, 'alice', NULL, now(), 'alice');
SELECT * FROM pg_temp.msgs() WHERE id = 101;

------------------------------------------------------------------------
-- Trigger order: the wipe fires after every other BEFORE trigger; one
-- named to sort after it makes the guard refuse writes (23514)
------------------------------------------------------------------------
CREATE TABLE ordered (id int PRIMARY KEY, sender text, body text);
INSERT INTO ordered VALUES (1, 'alice', 'one'), (2, 'alice', 'two');
CREATE FUNCTION ordered_restore() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.body := coalesce(NEW.body, OLD.body);
    RETURN NEW;
END $$;
CREATE TRIGGER zz_restore BEFORE UPDATE ON ordered
    FOR EACH ROW EXECUTE FUNCTION ordered_restore();
SELECT recall.enable('ordered', '{body}', sender => 'sender');
SELECT recall.recall('ordered', 1, 'alice');
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM ordered ORDER BY id;
CREATE FUNCTION ordered_sneak() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.body := 'sneaked back';
    RETURN NEW;
END $$;
CREATE TRIGGER "~~late" BEFORE UPDATE ON ordered
    FOR EACH ROW EXECUTE FUNCTION ordered_sneak();
SELECT tgname FROM pg_trigger WHERE tgrelid = 'ordered'::regclass AND NOT tgisinternal
ORDER BY tgname COLLATE "C";
\set VERBOSITY terse
SELECT recall.recall('ordered', 2, 'alice');
\echo :SQLSTATE
\set VERBOSITY default
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM ordered ORDER BY id;

-- the invariant, over everything above
SELECT count(*) AS recalled_with_content FROM msgs
WHERE recalled_at IS NOT NULL AND (body IS NOT NULL OR html IS NOT NULL OR tsv IS NOT NULL);
SELECT count(*) AS recalled_with_content FROM indexed
WHERE recalled_at IS NOT NULL AND (body IS NOT NULL OR summary <> '');

SET client_min_messages = warning;
DROP TABLE msgs, indexed, ordered CASCADE;
RESET client_min_messages;
DROP FUNCTION msgs_derive(), ordered_restore(), ordered_sneak();
