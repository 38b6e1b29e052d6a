--
-- security_columns: the table's own shape used against recall (issue 12,
-- findings 13-17): inheritance, renamed or dropped registered columns,
-- a superuser-only setting as the actor's source, a timestamptz key, a
-- NOT NULL domain.  The server log's side of 13 and 15 and the dump of
-- 17 are in test/t/040_security.pl.  Outcomes are SQLSTATEs and row
-- contents, never a message's wording.
--
\set ECHO none
\i test/security_setup.psql
\set ECHO all

------------------------------------------------------------------------
-- 13. Plain inheritance: enable refuses a table with children or
--     parents (0A000), and an enabled table can get neither afterwards;
--     partitions stay fine.  The invariant's error (23514) never shows
--     the content.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.p13 (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.c13 (PRIMARY KEY (id)) INHERITS (regress_sec.p13);
SELECT regress_sec_util.probe($$SELECT recall.enable('regress_sec.p13', '{body}', sender => 'sender')$$) AS enable_parent;
SELECT regress_sec_util.probe($$SELECT recall.enable('regress_sec.c13', '{body}', sender => 'sender')$$) AS enable_child;
CREATE TABLE regress_sec.e13 (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('regress_sec.e13', '{body}', sender => 'sender') IS NOT NULL AS enabled;
-- a twin, with every column and constraint the enabled table now has
CREATE TABLE regress_sec.x13 (LIKE regress_sec.e13 INCLUDING ALL);
CREATE TABLE regress_sec.y13 (id int);
SELECT regress_sec_util.probe($$ALTER TABLE regress_sec.x13 INHERIT regress_sec.e13$$) AS child_of_enabled;
SELECT regress_sec_util.probe($$CREATE TABLE regress_sec.z13 () INHERITS (regress_sec.e13)$$) AS new_child_of_enabled;
SELECT regress_sec_util.probe($$ALTER TABLE regress_sec.e13 INHERIT regress_sec.y13$$) AS enabled_as_child;
-- partitions are fine
CREATE TABLE regress_sec.part13 (id int, sender text, body text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE regress_sec.part13_1 PARTITION OF regress_sec.part13 FOR VALUES FROM (0) TO (100);
SELECT regress_sec_util.state($$SELECT recall.enable('regress_sec.part13', '{body}', sender => 'sender')$$) AS enable_partitioned;
SELECT regress_sec_util.probe($$CREATE TABLE regress_sec.part13_2 PARTITION OF regress_sec.part13 FOR VALUES FROM (100) TO (200)$$) AS new_partition;
-- the invariant refuses a recalled row that holds content, without
-- printing it
INSERT INTO regress_sec.e13 VALUES (1, 'regress_sec_attacker', 'c13-secret-text');
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), 'c13-secret') = 0 AS no_content
FROM regress_sec_util.err($$INSERT INTO regress_sec.e13 (id, sender, body, recalled_at)
                            VALUES (2, 'regress_sec_attacker', 'c13-secret-text', now())$$) e;
RESET SESSION AUTHORIZATION;
-- with triggers bypassed (a logical replication apply)
SET session_replication_role = replica;
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), 'c13-secret') = 0 AS no_content
FROM regress_sec_util.err($$UPDATE regress_sec.e13 SET recalled_at = now() WHERE id = 1$$) e;
RESET session_replication_role;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM regress_sec.e13 ORDER BY id;

------------------------------------------------------------------------
-- 14. Registered columns cannot be renamed (0A000) or dropped (2BP01,
--     CASCADE or not): key, content, sender, sent_at, conversation, the
--     recall columns, and a copy's match and content columns.  In no
--     case does a copy guard store recalled text or the invariant go.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m14 (id int PRIMARY KEY, sender text, sent_at timestamptz,
                              conv int, body text, html text, note text);
CREATE TABLE regress_sec.q14 (qid int PRIMARY KEY, ref int, quoted text, note text);
CREATE INDEX ON regress_sec.q14 (ref);
INSERT INTO regress_sec.m14 VALUES (1, 'regress_sec_attacker', now(), 7, 'c14-secret', '<p>c14-secret</p>', 'n');
SELECT recall.enable('regress_sec.m14', '{body,html}', sender => 'sender', sent_at => 'sent_at',
                     conversation => 'conv') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m14', 'regress_sec.q14', '{ref}', '{quoted}');
UPDATE regress_sec.m14 SET recalled_at = now() WHERE id = 1;
SELECT c.tbl, c.col,
       regress_sec_util.probe(format('ALTER TABLE %s RENAME COLUMN %I TO %I', c.tbl, c.col, c.col || '_x')) AS rename,
       regress_sec_util.probe(format('ALTER TABLE %s DROP COLUMN %I', c.tbl, c.col)) AS "drop",
       regress_sec_util.probe(format('ALTER TABLE %s DROP COLUMN %I CASCADE', c.tbl, c.col)) AS drop_cascade
FROM (VALUES ('regress_sec.m14', 'id'), ('regress_sec.m14', 'body'), ('regress_sec.m14', 'html'),
             ('regress_sec.m14', 'sender'), ('regress_sec.m14', 'sent_at'), ('regress_sec.m14', 'conv'),
             ('regress_sec.m14', 'recalled_at'), ('regress_sec.m14', 'recalled_by'),
             ('regress_sec.m14', 'recall_reason'), ('regress_sec.q14', 'ref'),
             ('regress_sec.q14', 'quoted'),
             -- columns recall does not know stay free (only the view,
             -- which shows every column, holds a DROP without CASCADE)
             ('regress_sec.m14', 'note'), ('regress_sec.q14', 'note')) AS c(tbl, col);
-- What the change would lead to, were it accepted: run the DDL, then a
-- write that must not store recalled text, then look for the text; all
-- rolled back.
CREATE FUNCTION regress_sec.leak_after(ddl text, dml text, tbl regclass) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    outcome text;
BEGIN
    BEGIN
        BEGIN
            EXECUTE ddl;
        EXCEPTION WHEN OTHERS THEN
            outcome := 'refused ' || SQLSTATE;
        END;
        IF outcome IS NULL THEN
            BEGIN
                EXECUTE dml;
            EXCEPTION WHEN OTHERS THEN
                outcome := 'accepted, then the write failed';
            END;
        END IF;
        IF outcome IS NULL THEN
            EXECUTE format('SELECT CASE WHEN EXISTS (SELECT FROM %s t WHERE t::text LIKE ''%%c14-secret%%'')'
                           ' THEN ''accepted, recalled text stored'' ELSE ''accepted, nothing stored'' END', tbl)
                INTO outcome;
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'PZ999';
    EXCEPTION WHEN SQLSTATE 'PZ999' THEN
        NULL;
    END;
    RETURN outcome;
END
$$;
SELECT regress_sec.leak_after('ALTER TABLE regress_sec.q14 RENAME COLUMN quoted TO quoted_x',
                              $$INSERT INTO regress_sec.q14 VALUES (10, 1, 'c14-secret')$$,
                              'regress_sec.q14') AS copy_content_renamed;
SELECT regress_sec.leak_after('ALTER TABLE regress_sec.q14 RENAME COLUMN ref TO ref_x',
                              $$INSERT INTO regress_sec.q14 VALUES (10, 1, 'c14-secret')$$,
                              'regress_sec.q14') AS copy_match_renamed;
SELECT regress_sec.leak_after('ALTER TABLE regress_sec.m14 DROP COLUMN html CASCADE',
                              $$INSERT INTO regress_sec.m14 (id, sender, body, recalled_at) VALUES (10, 'x', 'c14-secret', now())$$,
                              'regress_sec.m14') AS content_dropped;
SELECT regress_sec.leak_after('ALTER TABLE regress_sec.m14 RENAME COLUMN body TO body_x',
                              $$INSERT INTO regress_sec.m14 (id, sender, body_x, recalled_at) VALUES (10, 'x', 'c14-secret', now())$$,
                              'regress_sec.m14') AS content_renamed;
SELECT regress_sec.leak_after('ALTER TABLE regress_sec.m14 DROP COLUMN recalled_at CASCADE',
                              $$ALTER TABLE regress_sec.m14 ADD COLUMN recalled_at timestamptz;
                                INSERT INTO regress_sec.m14 (id, sender, body, recalled_at) VALUES (10, 'x', 'c14-secret', now())$$,
                              'regress_sec.m14') AS recalled_at_dropped;
RESET SESSION AUTHORIZATION;
SELECT id, body, html, recalled_at IS NOT NULL AS recalled FROM regress_sec.m14 ORDER BY id;

------------------------------------------------------------------------
-- 15. actor_setting naming a superuser-only setting: a role that cannot
--     read the setting gets "no identity" (42501); its value appears in
--     no error, detail or hint, nor in recalled_by.
SELECT current_setting('data_directory') AS datadir \gset
GRANT recall_admin TO regress_sec_app;
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m15 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m15 VALUES (1, 'regress_sec_attacker', 'c15-secret'),
                                   (2, 'regress_sec_attacker', 'c15-secret-2');
SELECT regress_sec_util.state($$SELECT recall.enable('regress_sec.m15', '{body}', sender => 'sender',
                                                     actor_source => 'setting',
                                                     actor_setting => 'data_directory')$$) AS enable;
GRANT SELECT, UPDATE ON regress_sec.m15 TO regress_sec_app;
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), :'datadir') = 0 AS value_hidden
FROM regress_sec_util.err($$UPDATE regress_sec.m15 SET recalled_at = now() WHERE id = 1$$) e;
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), :'datadir') = 0 AS value_hidden
FROM regress_sec_util.err($$UPDATE regress_sec.m15 SET recalled_at = now(), recalled_by = 'someone' WHERE id = 1$$) e;
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), :'datadir') = 0 AS value_hidden
FROM regress_sec_util.err($$SELECT recall.recall('regress_sec.m15', 1)$$) e;
-- a member of recall_admin, with a reason: the actor would be stored
SET SESSION AUTHORIZATION regress_sec_app;
SELECT e.state, strpos(concat_ws('|', e.msg, e.detail, e.hint), :'datadir') = 0 AS value_hidden
FROM regress_sec_util.err($$UPDATE regress_sec.m15 SET recalled_at = now(), recall_reason = 'spam' WHERE id = 2$$) e;
RESET SESSION AUTHORIZATION;
REVOKE recall_admin FROM regress_sec_app;
SELECT id, body IS NULL AS wiped, strpos(coalesce(recalled_by, ''), :'datadir') = 0 AS value_hidden
FROM regress_sec.m15 ORDER BY id;

------------------------------------------------------------------------
-- 16. A timestamptz key: a copy that points at a recalled (and deleted)
--     message is recognised whatever the TimeZone of the session that
--     recalled it or writes the copy; the event spells the key in UTC.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m16 (ts timestamptz PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q16 (qid int PRIMARY KEY, ref timestamptz, quoted text);
CREATE INDEX ON regress_sec.q16 (ref);
INSERT INTO regress_sec.m16 VALUES ('2024-01-02 03:04:05.678+00', 'regress_sec_attacker', 'c16-secret'),
                                   ('2024-01-02 04:00:00+00', 'regress_sec_attacker', 'c16-kept');
SELECT recall.enable('regress_sec.m16', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m16', 'regress_sec.q16', '{ref}', '{quoted}');
SET TimeZone = 'Asia/Tokyo';
UPDATE regress_sec.m16 SET recalled_at = now() WHERE ts = '2024-01-02 03:04:05.678+00';
DELETE FROM regress_sec.m16 WHERE ts = '2024-01-02 03:04:05.678+00';
SET TimeZone = 'UTC';
INSERT INTO regress_sec.q16 VALUES (1, '2024-01-02 03:04:05.678+00', 'c16-secret'),
                                   (2, '2024-01-02 04:00:00+00', 'c16-kept');
SET TimeZone = 'America/New_York';
INSERT INTO regress_sec.q16 VALUES (3, '2024-01-02 03:04:05.678+00', 'c16-secret');
SET TimeZone = 'Asia/Tokyo';
INSERT INTO regress_sec.q16 VALUES (4, '2024-01-02 03:04:05.678+00', 'c16-secret');
SET TimeZone = 'UTC';
SELECT qid, ref, quoted FROM regress_sec.q16 ORDER BY qid;
RESET SESSION AUTHORIZATION;
SELECT pk FROM recall.events WHERE tbl = 'regress_sec.m16'::regclass;
RESET TimeZone;

------------------------------------------------------------------------
-- 17. A content column of a NOT NULL domain (over text) is wiped to the
--     empty value '', never to NULL, which the domain would refuse (a
--     dump would not restore).
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE DOMAIN regress_sec.nn_text AS text NOT NULL;
CREATE TABLE regress_sec.m17 (id int PRIMARY KEY, sender text, body regress_sec.nn_text);
INSERT INTO regress_sec.m17 VALUES (1, 'regress_sec_attacker', 'c17-secret'),
                                   (2, 'regress_sec_attacker', 'c17-secret-2');
SELECT recall.enable('regress_sec.m17', '{body}', sender => 'sender') IS NOT NULL AS enabled;
UPDATE regress_sec.m17 SET recalled_at = now() WHERE id = 1;
-- a recalled row arrives already wiped (a restore, a replica)
SELECT regress_sec_util.state($$INSERT INTO regress_sec.m17 (id, sender, body, recalled_at) VALUES (3, 'x', '', now())$$) AS insert_wiped;
SELECT id, body IS NULL AS is_null, body = '' AS is_empty, recalled_at IS NOT NULL AS recalled
FROM regress_sec.m17 ORDER BY id;
-- what a dump's COPY would load back: the text of each value, through
-- the domain's input
SELECT regress_sec_util.probe($$SELECT body::text::regress_sec.nn_text FROM regress_sec.m17$$) AS reload;
RESET SESSION AUTHORIZATION;

\set ECHO none
\i test/security_teardown.psql
