--
-- security_guards: an untrusted role tries to crash, jam or weaken recall
-- without any server crash risk in this suite (issue 12, findings 5, 7,
-- 9, 10, 11, 12; the crashing half of 5 and the workers' side of 7 are in
-- test/t/042_security_crash.pl and test/t/040_security.pl).  Outcomes are
-- SQLSTATEs and row contents, never a message's wording.
--
\set ECHO none
\i test/security_setup.psql
\set ECHO all

------------------------------------------------------------------------
-- 5. The internal recall._* functions, called directly by an
--    unprivileged role with hostile input: each call is refused (42501)
--    or fails cleanly (a SQLSTATE of its own, never XX000); nothing is
--    stored.  Every call is rolled back whatever it does, so that no
--    bad registration can crash a later recall here.
-- another role's table and copy, registered properly
SET SESSION AUTHORIZATION regress_sec_app;
CREATE TABLE regress_sec_victim.other (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec_victim.other_copy (qid int PRIMARY KEY, ref int, quoted text);
CREATE INDEX ON regress_sec_victim.other_copy (ref);
SELECT recall.enable('regress_sec_victim.other', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec_victim.other', 'regress_sec_victim.other_copy', '{ref}', '{quoted}');
-- the attacker's own
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.g5 (id int PRIMARY KEY, sender text, body text, note text);
CREATE TABLE regress_sec.q5 (qid int PRIMARY KEY, ref int, quoted text, extra text);
CREATE INDEX ON regress_sec.q5 (ref);
INSERT INTO regress_sec.g5 VALUES (1, 'regress_sec_attacker', 'c5-secret', 'n'),
                                  (2, 'regress_sec_attacker', 'c5-secret-2', 'n');
INSERT INTO regress_sec.q5 VALUES (1, 1, 'c5-secret', 'e');
SELECT recall.enable('regress_sec.g5', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.g5', 'regress_sec.q5', '{ref}', '{quoted}');
-- the registrations as they are, to compare with afterwards
CREATE TABLE regress_sec.tables_before AS SELECT * FROM recall.tables;
CREATE TABLE regress_sec.copies_before AS SELECT * FROM recall.copies;
CREATE TABLE regress_sec.hostile (n serial, call text);
-- Each call builds its row from the real registration (so that it keeps
-- the shape of recall.tables and recall.copies) and spoils one field.
CREATE FUNCTION regress_sec.spoil_table(tbl regclass, field text, val text) RETURNS text
LANGUAGE sql AS $fn$
    SELECT format($f$DO $d$ DECLARE t recall.tables; BEGIN
        SELECT * INTO t FROM recall.tables x WHERE x.tbl = %L::regclass;
        t.%I := %s; PERFORM recall._registry_put(t); END $d$$f$, tbl, field, val)
$fn$;
CREATE FUNCTION regress_sec.spoil_copy(field text, val text, tbl regclass DEFAULT 'regress_sec.g5',
                                       copy regclass DEFAULT 'regress_sec.q5') RETURNS text
LANGUAGE sql AS $fn$
    SELECT format($f$DO $d$ DECLARE c recall.copies; BEGIN
        SELECT * INTO c FROM recall.copies x WHERE x.tbl = 'regress_sec.g5'::regclass;
        c.tbl := %L; c.copy := %L; c.%I := %s; PERFORM recall._copies_put(c); END $d$$f$,
        tbl, copy, field, val)
$fn$;
INSERT INTO regress_sec.hostile (call) VALUES
    -- registry rows that would break, jam or crash later recalls
    (regress_sec.spoil_table('regress_sec.g5', 'tbl', 'NULL')),
    (regress_sec.spoil_table('regress_sec.g5', 'channel', $$''$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'channel', 'NULL')),
    (regress_sec.spoil_table('regress_sec.g5', 'wiped_values', 'NULL')),
    (regress_sec.spoil_table('regress_sec.g5', 'wiped_values', $$'{}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'content', $$'{body,note}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'content', $$'{no_such_column}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'content', 'NULL')),
    (regress_sec.spoil_table('regress_sec.g5', 'key_columns', $$'{}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'key_columns', $$'{body}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'key_columns', 'NULL')),
    (regress_sec.spoil_table('regress_sec.g5', 'sender', $$'no_such_column'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'actor_source', $$'bogus'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'view_name', 'NULL')),
    (regress_sec.spoil_table('regress_sec_victim.other', 'content', $$'{sender}'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'tbl', $$'regress_sec_victim.other'$$)),
    (regress_sec.spoil_table('regress_sec.g5', 'tbl', '4294967295')),
    ($$SELECT recall._registry_delete('regress_sec_victim.other')$$),
    ($$SELECT recall._registry_delete(4294967295::oid::regclass)$$),
    -- copy registrations
    (regress_sec.spoil_copy('wiped_values', 'NULL')),
    (regress_sec.spoil_copy('wiped_values', $$'{}'$$)),
    (regress_sec.spoil_copy('content', $$'{quoted,extra}'$$)),
    (regress_sec.spoil_copy('content', $$'{no_such_column}'$$)),
    (regress_sec.spoil_copy('match', $$'{}'$$)),
    (regress_sec.spoil_copy('match', $$'{ref,qid}'$$)),
    (regress_sec.spoil_copy('match', $$'{no_such_column}'$$)),
    (regress_sec.spoil_copy('match', 'NULL')),
    (regress_sec.spoil_copy('action', 'NULL')),
    (regress_sec.spoil_copy('tbl', 'NULL')),
    (regress_sec.spoil_copy('copy', 'NULL')),
    (regress_sec.spoil_copy('wiped_values', $$'{NULL}'$$, tbl => 'regress_sec_victim.other')),
    (regress_sec.spoil_copy('wiped_values', $$'{NULL}'$$, copy => 'regress_sec_victim.other_copy')),
    (regress_sec.spoil_copy('wiped_values', $$'{NULL}'$$, tbl => '4294967295')),
    ($$SELECT recall._copies_delete(c) FROM recall.copies c WHERE c.tbl = 'regress_sec_victim.other'::regclass$$),
    ($$SELECT recall._treat_existing_copies('regress_sec_victim.other', 'regress_sec_victim.other_copy', '{ref}')$$),
    ($$SELECT recall._copy_guards('regress_sec_victim.other_copy')$$),
    ($$SELECT recall._drop_objects('regress_sec_victim.other')$$),
    ($$SELECT recall._clear_statistics('regress_sec_victim.other', 'body')$$),
    ($$SELECT recall._wiped_value('regress_sec_victim.other', 'body')$$),
    ($$SELECT recall._wiped_value(4294967295::oid::regclass, 'body')$$),
    ($$SELECT recall._wiped_value('regress_sec.g5', '')$$);
-- the calls that were neither refused nor failed cleanly (42883, no such
-- function, means this list is out of date)
SELECT h.n, h.call, s.state
FROM regress_sec.hostile h,
     LATERAL (SELECT regress_sec_util.probe(h.call) AS state) s
WHERE s.state IN ('ok', '42883') OR s.state LIKE 'XX%' OR s.state LIKE '58%'
ORDER BY h.n;
-- nothing stuck: recalls, copies and events still work for the attacker
UPDATE regress_sec.g5 SET recalled_at = now() WHERE id = 1;
INSERT INTO regress_sec.q5 VALUES (2, 1, 'c5-secret', 'e');
RESET SESSION AUTHORIZATION;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM regress_sec.g5 ORDER BY id;
SELECT qid, ref, quoted FROM regress_sec.q5 ORDER BY qid;
SELECT count(*) AS events FROM recall.events WHERE tbl = 'regress_sec.g5'::regclass;
-- the registrations did not change
SELECT NOT EXISTS (SELECT * FROM recall.tables EXCEPT SELECT * FROM regress_sec.tables_before)
       AND NOT EXISTS (SELECT * FROM regress_sec.tables_before EXCEPT SELECT * FROM recall.tables)
       AS tables_unchanged,
       NOT EXISTS (SELECT * FROM recall.copies EXCEPT SELECT * FROM regress_sec.copies_before)
       AND NOT EXISTS (SELECT * FROM regress_sec.copies_before EXCEPT SELECT * FROM recall.copies)
       AS copies_unchanged;

------------------------------------------------------------------------
-- 7. A temporary table cannot be enabled (nor registered as a copy): its
--    registration would outlive it and jam recall.purge() and the purger
--    for everyone.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TEMP TABLE t7 (id int PRIMARY KEY, sender text, body text);
CREATE TEMP TABLE t7_copy (qid int PRIMARY KEY, ref int, quoted text);
CREATE TABLE regress_sec.m7 (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('regress_sec.m7', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT regress_sec_util.state($$SELECT recall.enable('pg_temp.t7', '{body}', sender => 'sender')$$) AS enable_temp;
SELECT regress_sec_util.state($$SELECT recall.add_copy('regress_sec.m7', 'pg_temp.t7_copy', '{ref}', '{quoted}')$$) AS add_temp_copy;
-- the session ends; wait until its temporary tables are gone
\c -
SET client_min_messages = warning;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN NOT EXISTS (SELECT FROM pg_class WHERE relname IN ('t7', 't7_copy') AND relpersistence = 't');
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
-- recall.purge() works for everyone: another role, the attacker, a superuser
SET SESSION AUTHORIZATION regress_sec_app;
SELECT regress_sec_util.state('SELECT count(*) FROM recall.purge()') AS purge_other_role;
SET SESSION AUTHORIZATION regress_sec_attacker;
SELECT regress_sec_util.state('SELECT count(*) FROM recall.purge()') AS purge_attacker;
RESET SESSION AUTHORIZATION;
SELECT regress_sec_util.state('SELECT count(*) FROM recall.purge()') AS purge_superuser;

------------------------------------------------------------------------
-- 9. recall.prune_events(older_than) runs and deletes the old events
--    (only those), for a superuser or a member of recall_admin.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m9 (id int PRIMARY KEY, sender text, body text);
INSERT INTO regress_sec.m9 VALUES (1, 'regress_sec_attacker', 'c9-secret');
SELECT recall.enable('regress_sec.m9', '{body}', sender => 'sender') IS NOT NULL AS enabled;
UPDATE regress_sec.m9 SET recalled_at = now() WHERE id = 1;
RESET SESSION AUTHORIZATION;
-- an event from long ago (written by hand: a recall is always stamped now)
INSERT INTO recall.events (xid, tbl, pk, actor, db_role, privileged, recalled_at)
VALUES (pg_current_xact_id(), 'regress_sec.m9', '{"id": 9999}', 'someone', current_user, false,
        now() - interval '400 days');
SET SESSION AUTHORIZATION regress_sec_attacker;
SELECT regress_sec_util.state($$SELECT recall.prune_events('365 days')$$) AS prune_not_admin;
RESET SESSION AUTHORIZATION;
SELECT regress_sec_util.state($$SELECT recall.prune_events('365 days')$$) AS prune_superuser;
SELECT pk AS left_after_superuser FROM recall.events WHERE tbl = 'regress_sec.m9'::regclass ORDER BY seq;
GRANT recall_admin TO regress_sec_app;
INSERT INTO recall.events (xid, tbl, pk, actor, db_role, privileged, recalled_at)
VALUES (pg_current_xact_id(), 'regress_sec.m9', '{"id": 9998}', 'someone', current_user, false,
        now() - interval '400 days');
SET SESSION AUTHORIZATION regress_sec_app;
SELECT regress_sec_util.state($$SELECT recall.prune_events('365 days')$$) AS prune_admin;
RESET SESSION AUTHORIZATION;
REVOKE recall_admin FROM regress_sec_app;
SELECT pk AS left_after_admin FROM recall.events WHERE tbl = 'regress_sec.m9'::regclass ORDER BY seq;

------------------------------------------------------------------------
-- 10. A copy wipe that fails inside a savepoint (the copy table's own
--     trigger raises, once) must not leave the copy guards switched off
--     for the rest of the session.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m10 (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q10 (qid int PRIMARY KEY, ref int, quoted text);
CREATE INDEX ON regress_sec.q10 (ref);
CREATE SEQUENCE regress_sec.s10;
CREATE FUNCTION regress_sec.fail_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('regress_sec.s10') = 1 THEN
        RAISE EXCEPTION 'the copy table''s trigger fails once' USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER fail_once BEFORE UPDATE ON regress_sec.q10
    FOR EACH ROW EXECUTE FUNCTION regress_sec.fail_once();
INSERT INTO regress_sec.m10 VALUES (1, 'regress_sec_attacker', 'c10-one'),
                                   (2, 'regress_sec_attacker', 'c10-two');
INSERT INTO regress_sec.q10 VALUES (1, 1, 'c10-one'), (2, 2, 'c10-two');
SELECT recall.enable('regress_sec.m10', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m10', 'regress_sec.q10', '{ref}', '{quoted}');
BEGIN;
SAVEPOINT s;
UPDATE regress_sec.m10 SET recalled_at = now() WHERE id = 1;
ROLLBACK TO SAVEPOINT s;
COMMIT;
-- later in the same session
UPDATE regress_sec.m10 SET recalled_at = now() WHERE id = 2;
-- an UPDATE that puts the recalled text back into a copy is wiped
SELECT regress_sec_util.state($$UPDATE regress_sec.q10 SET quoted = 'c10-two' WHERE qid = 2$$) AS update_copy;
-- an INSERT into the copy table is stored (wiped)
SELECT regress_sec_util.state($$INSERT INTO regress_sec.q10 VALUES (3, 2, 'c10-two'), (4, 1, 'c10-one')$$) AS insert_copies;
SELECT qid, ref, quoted FROM regress_sec.q10 ORDER BY qid;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM regress_sec.m10 ORDER BY id;
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------
-- 11. A recall that also changes the message's key is refused (0A000),
--     like one that moves it to another partition; the normal recall
--     then wipes the copies of the old key.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m11 (id int PRIMARY KEY, sender text, body text);
CREATE TABLE regress_sec.q11 (qid int PRIMARY KEY, ref int, quoted text);
CREATE INDEX ON regress_sec.q11 (ref);
INSERT INTO regress_sec.m11 VALUES (1, 'regress_sec_attacker', 'c11-secret'),
                                   (2, 'regress_sec_attacker', 'c11-two');
INSERT INTO regress_sec.q11 VALUES (1, 1, 'c11-secret'), (2, 2, 'c11-two');
SELECT recall.enable('regress_sec.m11', '{body}', sender => 'sender') IS NOT NULL AS enabled;
SELECT recall.add_copy('regress_sec.m11', 'regress_sec.q11', '{ref}', '{quoted}');
SELECT regress_sec_util.state($$UPDATE regress_sec.m11 SET recalled_at = now(), id = 1000 WHERE id = 1$$) AS recall_and_rekey;
SELECT regress_sec_util.state($$UPDATE regress_sec.m11 SET recalled_at = now() WHERE id = 1$$) AS recall;
SELECT qid, ref, quoted FROM regress_sec.q11 ORDER BY qid;
-- the same through INSERT ... ON CONFLICT DO UPDATE
SELECT regress_sec_util.state($$INSERT INTO regress_sec.m11 VALUES (2, 'regress_sec_attacker', 'x') ON CONFLICT (id) DO UPDATE SET recalled_at = now(), id = 1002$$) AS upsert_recall_and_rekey;
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM regress_sec.m11 ORDER BY id;
RESET SESSION AUTHORIZATION;
SELECT pk FROM recall.events WHERE tbl = 'regress_sec.m11'::regclass ORDER BY seq;

------------------------------------------------------------------------
-- 12. Window and sender are not for an earlier UPDATE to move.  Here
--     regress_sec_app, with UPDATE on the table but neither its owner nor
--     a member of recall_admin, is the attacker.
SET TimeZone = 'UTC';
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m12 (id int PRIMARY KEY, sender text, sent_at timestamptz, body text, flag int);
INSERT INTO regress_sec.m12 VALUES
    (1, 'regress_sec_victim', now() - interval '1 minute', 'c12-victim', 0),
    (2, 'regress_sec_app', now() - interval '1 hour', 'c12-own-old', 0),
    (3, 'regress_sec_victim', now() - interval '1 minute', 'c12-victim-3', 0),
    (4, 'regress_sec_app', now() - interval '1 hour', 'c12-own-old-4', 0);
SELECT recall.enable('regress_sec.m12', '{body}', sender => 'sender', sent_at => 'sent_at',
                     recall_window => '15 minutes', actor_source => 'role') IS NOT NULL AS enabled;
GRANT SELECT, UPDATE ON regress_sec.m12 TO regress_sec_app;
SET SESSION AUTHORIZATION regress_sec_app;
-- taking over another's fresh message, or moving one's own old one back
-- into the window
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET sender = 'regress_sec_app' WHERE id = 1$$) AS take_over_sender;
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET sent_at = now() WHERE id = 2$$) AS reset_sent_at;
-- and then recalling them as one's own
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET recalled_at = now() WHERE id = 1$$) AS recall_taken_over;
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET recalled_at = now() WHERE id = 2$$) AS recall_own_late;
-- both in the recall's own statement
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET recalled_at = now(), sender = 'regress_sec_app' WHERE id = 3$$) AS recall_and_take_over;
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET recalled_at = now(), sent_at = now() WHERE id = 4$$) AS recall_and_reset;
-- other columns stay writable
SELECT regress_sec_util.state($$UPDATE regress_sec.m12 SET flag = flag + 1$$) AS update_flag;
RESET SESSION AUTHORIZATION;
SELECT id, sender, sent_at > now() - interval '30 minutes' AS in_window, body,
       recalled_at IS NOT NULL AS recalled, flag
FROM regress_sec.m12 ORDER BY id;
-- the owner may still correct sender and sent_at
SET SESSION AUTHORIZATION regress_sec_attacker;
SELECT regress_sec_util.probe($$UPDATE regress_sec.m12 SET sent_at = sent_at - interval '1 second', sender = sender || '' WHERE id = 1$$) AS owner_corrects;
RESET SESSION AUTHORIZATION;

-- A timestamp (without time zone) sent_at is read in the time zone in
-- effect when enable ran (UTC here), whatever the recalling session's.
SET SESSION AUTHORIZATION regress_sec_attacker;
CREATE TABLE regress_sec.m12t (id int PRIMARY KEY, sender text, sent_at timestamp, body text);
INSERT INTO regress_sec.m12t VALUES
    (1, 'regress_sec_attacker', localtimestamp - interval '1 hour', 'c12t-late'),
    (2, 'regress_sec_attacker', localtimestamp - interval '5 minutes', 'c12t-fresh');
SELECT recall.enable('regress_sec.m12t', '{body}', sender => 'sender', sent_at => 'sent_at',
                     recall_window => '15 minutes') IS NOT NULL AS enabled;
-- twelve hours behind UTC: the hour-old message would look 11 hours young
SET TimeZone = 'Etc/GMT+12';
SELECT regress_sec_util.state($$UPDATE regress_sec.m12t SET recalled_at = now() WHERE id = 1$$) AS recall_late_west;
-- twelve hours ahead: the fresh message would look 12 hours old
SET TimeZone = 'Etc/GMT-12';
SELECT regress_sec_util.state($$UPDATE regress_sec.m12t SET recalled_at = now() WHERE id = 2$$) AS recall_fresh_east;
SET TimeZone = 'UTC';
SELECT id, body, recalled_at IS NOT NULL AS recalled FROM regress_sec.m12t ORDER BY id;
RESET SESSION AUTHORIZATION;
RESET TimeZone;

\set ECHO none
\i test/security_teardown.psql
