--
-- security: a table owner tries to become superuser (issue 12, findings
-- 1-4).  The attacker owns one schema and its tables, nothing more; every
-- function it plants calls regress_sec.payload() (see
-- test/security_setup.psql), which tries ALTER ROLE ... SUPERUSER and
-- records who ran it.  After each attack the referee asserts that the
-- attacker is not superuser and that no payload ran as anyone else.
-- Nothing here depends on the wording of a message.
--
\set ECHO none
\i test/security_setup.psql
\set ECHO all

------------------------------------------------------------------------
-- 1. A key of a user-defined type (an enum) whose owner created a cast
--    to json: the event's key must be built without looking the cast up.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TYPE regress_sec.mood AS ENUM ('calm', 'angry');
CREATE FUNCTION regress_sec.mood_json(regress_sec.mood) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_sec.payload('1 cast to json');
    RETURN pg_catalog.to_json($1::text);
END
$$;
CREATE CAST (regress_sec.mood AS json) WITH FUNCTION regress_sec.mood_json(regress_sec.mood);
CREATE TABLE regress_sec.m1 (id regress_sec.mood PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m1 VALUES ('calm', 'regress_sec_attacker', 'c1-secret');
SELECT recall.enable('regress_sec.m1', '{body}', sender => 'sender') IS NOT NULL AS enabled;
-- a self-recall
SELECT regress_sec_util.state($$UPDATE regress_sec.m1 SET recalled_at = now() WHERE id = 'calm'$$) AS recall;
RESET SESSION AUTHORIZATION;
SELECT * FROM regress_sec_util.verdict('1 %');
-- the recall itself worked: wiped, one event naming the key by its text
SELECT recalled_at IS NOT NULL AS recalled, body IS NULL AS wiped FROM regress_sec.m1;
SELECT pk FROM recall.events WHERE tbl = 'regress_sec.m1'::regclass;

------------------------------------------------------------------------
-- 2. recall.purge() under the attacker's search_path, where its own
--    max(xid8), "/" and comparison operators come before pg_catalog's.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m2 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m2 VALUES (1, 'regress_sec_attacker', 'c2-secret');
SELECT recall.enable('regress_sec.m2', '{body}', sender => 'sender') IS NOT NULL AS enabled;
UPDATE regress_sec.m2 SET recalled_at = now() WHERE id = 1;

-- (its shadows of max(xid8), now(), "/", "="... were made by
-- test/security_shadow.psql)
BEGIN;
SET LOCAL search_path = regress_sec, pg_catalog;
SELECT regress_sec_util.state('SELECT count(*) FROM recall.purge()') AS purge;
SELECT regress_sec_util.state($$SELECT count(*) FROM recall.purge('regress_sec.m2')$$) AS purge_one;
COMMIT;
RESET SESSION AUTHORIZATION;
SELECT * FROM regress_sec_util.verdict('shadow %');

------------------------------------------------------------------------
-- 3. An IMMUTABLE function of the attacker's in an index expression and
--    in an index predicate on a content column: recall.purge() must not
--    evaluate it as a more privileged role (a REINDEX runs it as the
--    table's owner, which is the attacker).
SET SESSION AUTHORIZATION regress_sec_attacker;
-- (regress_sec.imm(), IMMUTABLE, was made by test/security_shadow.psql)
CREATE TABLE regress_sec.m3 (id int PRIMARY KEY, sender text, body text);
CREATE INDEX m3_expr ON regress_sec.m3 ((body || regress_sec.imm('expression')));
CREATE INDEX m3_pred ON regress_sec.m3 (id) WHERE body <> regress_sec.imm('predicate');
INSERT INTO regress_sec.m3 VALUES (1, 'regress_sec_attacker', 'c3-secret');
SELECT recall.enable('regress_sec.m3', '{body}', sender => 'sender') IS NOT NULL AS enabled;
UPDATE regress_sec.m3 SET recalled_at = now() WHERE id = 1;
-- a new backend, whose relation cache has not read the index expressions yet
\c -
SET client_min_messages = warning;
SET SESSION AUTHORIZATION regress_sec_attacker;
SELECT regress_sec_util.state($$SELECT count(*) FROM recall.purge('regress_sec.m3')$$) AS purge;
\c -
SET client_min_messages = warning;
SET SESSION AUTHORIZATION regress_sec_attacker;
SELECT regress_sec_util.state('SELECT count(*) FROM recall.purge()') AS purge_all;
RESET SESSION AUTHORIZATION;
SELECT * FROM regress_sec_util.verdict('index %');

------------------------------------------------------------------------
-- 4. The copy guard: a copy whose match column's type differs from the
--    key's.  (a) A key of a domain over bigint whose CHECK calls the
--    attacker's function, matched by a bigint column; (b) an enum key
--    matched by a text column, with the attacker's cast from text.
--    Inserting into the copy table must never run that code as a more
--    privileged role, and the guard must still work.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE FUNCTION regress_sec.msgid_ok(bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_sec.payload('4 domain check');
    RETURN true;
END
$$;
CREATE DOMAIN regress_sec.msgid AS bigint CHECK (regress_sec.msgid_ok(VALUE));
CREATE TABLE regress_sec.m4 (id regress_sec.msgid PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q4 (qid int PRIMARY KEY, ref bigint, quoted text);
CREATE INDEX ON regress_sec.q4 (ref);
INSERT INTO regress_sec.m4 VALUES (1, 'regress_sec_attacker', 'c4-secret'),
                                  (2, 'regress_sec_attacker', 'c4-kept');
SELECT recall.enable('regress_sec.m4', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m4', 'regress_sec.q4', '{ref}', '{quoted}');
UPDATE regress_sec.m4 SET recalled_at = now() WHERE id = 1;
SELECT regress_sec_util.state($$INSERT INTO regress_sec.q4 VALUES (1, 1, 'c4-secret'), (2, 2, 'c4-kept'), (3, 3, 'c4-none')$$) AS insert_copies;
SELECT regress_sec_util.state($$UPDATE regress_sec.q4 SET quoted = 'c4-secret' WHERE qid = 1$$) AS update_copy;

-- (b)
CREATE FUNCTION regress_sec.text_mood(text) RETURNS regress_sec.mood
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM regress_sec.payload('4 cast from text');
    RETURN (SELECT m FROM pg_catalog.unnest(pg_catalog.enum_range(NULL::regress_sec.mood)) AS u(m)
            WHERE m::text OPERATOR(pg_catalog.=) $1);
END
$$;
CREATE CAST (text AS regress_sec.mood) WITH FUNCTION regress_sec.text_mood(text);
CREATE TABLE regress_sec.m4b (id regress_sec.mood PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q4b (qid int PRIMARY KEY, ref text, quoted text);
CREATE INDEX ON regress_sec.q4b (ref);
INSERT INTO regress_sec.m4b VALUES ('calm', 'regress_sec_attacker', 'c4b-secret'),
                                   ('angry', 'regress_sec_attacker', 'c4b-kept');
SELECT recall.enable('regress_sec.m4b', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m4b', 'regress_sec.q4b', '{ref}', '{quoted}');
UPDATE regress_sec.m4b SET recalled_at = now() WHERE id = 'calm';
SELECT regress_sec_util.state($$INSERT INTO regress_sec.q4b VALUES (1, 'calm', 'c4b-secret'), (2, 'angry', 'c4b-kept'), (3, 'sad', 'c4b-none')$$) AS insert_copies;
-- a recalled message deleted since: its copies are still recognised
DELETE FROM regress_sec.m4b WHERE id = 'calm';
SELECT regress_sec_util.state($$INSERT INTO regress_sec.q4b VALUES (4, 'calm', 'c4b-secret')$$) AS insert_copy_of_deleted;
RESET SESSION AUTHORIZATION;
SELECT * FROM regress_sec_util.verdict('4 %');
-- the guards did their work: copies of the recalled messages hold no text
SELECT qid, ref, quoted FROM regress_sec.q4 ORDER BY qid;
SELECT qid, ref, quoted FROM regress_sec.q4b ORDER BY qid;

------------------------------------------------------------------------
-- No payload of any case ran as anyone but the attacker.
SELECT * FROM regress_sec_util.verdict('%');
\set ECHO none
\i test/security_teardown.psql
