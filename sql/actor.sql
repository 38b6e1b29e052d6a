--
-- actor: where the database takes the actor from (actor_source 'role' and
-- 'setting'), and impersonation attempts refused on every channel.
--
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = notice;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_actor_authenticator;
DROP ROLE IF EXISTS regress_actor_alice;
DROP ROLE IF EXISTS regress_actor_bob;
DROP ROLE IF EXISTS regress_actor_mod;
DROP ROLE IF EXISTS regress_actor_web;
RESET client_min_messages;
-- as PostgREST: a LOGIN role that may become each user's role, per request
CREATE ROLE regress_actor_alice;
CREATE ROLE regress_actor_bob;
CREATE ROLE regress_actor_mod IN ROLE recall_admin;
CREATE ROLE regress_actor_authenticator LOGIN NOINHERIT
    IN ROLE regress_actor_alice, regress_actor_bob, regress_actor_mod;
-- as Supabase: one 'authenticated' role for everybody, the user in the JWT
CREATE ROLE regress_actor_web;
GRANT regress_actor_web TO regress_actor_authenticator;

-- what a table's recall looks like: rows, and their events
CREATE FUNCTION pg_temp.state(t regclass) RETURNS TABLE (
    pk jsonb, body text, recalled boolean, recalled_by text, event_actor text,
    event_db_role name, privileged boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT to_jsonb(m) - ''body'' - ''sender'' - ''recalled_at'' - ''recalled_by'' - ''recall_reason'','
        '       m.body, m.recalled_at IS NOT NULL, m.recalled_by, e.actor, e.db_role, e.privileged'
        '  FROM %s m LEFT JOIN recall.events e ON e.tbl = %L::regclass AND e.pk = jsonb_build_object(''id'', m.id)'
        ' ORDER BY m.id', t, t);
END $$;

------------------------------------------------------------------------
-- actor_source 'role': the actor is current_user
------------------------------------------------------------------------
CREATE TABLE role_msgs (
    id      int PRIMARY KEY,
    sender  text NOT NULL,
    body    text
);
INSERT INTO role_msgs VALUES
    (1, 'regress_actor_alice', 'alice 1'), (2, 'regress_actor_bob', 'bob 2'),
    (3, 'regress_actor_alice', 'alice 3'), (4, 'regress_actor_bob', 'bob 4'),
    (5, 'regress_actor_bob', 'bob 5'), (6, 'regress_actor_alice', 'alice 6'),
    (7, 'regress_actor_alice', 'alice 7'), (8, 'regress_actor_alice', 'alice 8'),
    (9, 'regress_actor_alice', 'alice 9');
SELECT recall.enable('role_msgs', '{body}', sender => 'sender', actor_source => 'role');
SELECT actor_source, actor_setting, actor_claim FROM recall.tables
WHERE tbl = 'role_msgs'::regclass;
GRANT SELECT, INSERT, UPDATE ON role_msgs
    TO regress_actor_alice, regress_actor_bob, regress_actor_mod;

-- the connection logs in as the authenticator, then becomes the user
SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_alice;
SELECT session_user, current_user;
-- her own message
UPDATE role_msgs SET recalled_at = now() WHERE id = 1;
SELECT recall.recall('role_msgs', 3);
-- naming herself is no impersonation
UPDATE role_msgs SET recalled_at = now(), recalled_by = 'regress_actor_alice' WHERE id = 6;
SELECT recall.recall('role_msgs', 7, 'regress_actor_alice');
-- another's message
UPDATE role_msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
SELECT recall.recall('role_msgs', 2);
\echo :SQLSTATE
-- impersonating bob, through each channel: 42501, nothing changed
UPDATE role_msgs SET recalled_at = now(), recalled_by = 'regress_actor_bob' WHERE id = 2;
\echo :SQLSTATE
SELECT recall.recall('role_msgs', 2, 'regress_actor_bob');
\echo :SQLSTATE
SET recall.actor = 'regress_actor_bob';
UPDATE role_msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
SELECT recall.recall('role_msgs', 2);
\echo :SQLSTATE
-- ... even for her own message: the named actor is not the role
UPDATE role_msgs SET recalled_at = now() WHERE id = 8;
\echo :SQLSTATE
RESET recall.actor;
-- and through MERGE and ON CONFLICT
MERGE INTO role_msgs m USING (VALUES (2)) AS s(id) ON m.id = s.id
WHEN MATCHED THEN UPDATE SET recalled_at = now(), recalled_by = 'regress_actor_bob';
\echo :SQLSTATE
INSERT INTO role_msgs VALUES (2, 'x', 'x') ON CONFLICT (id)
DO UPDATE SET recalled_at = now(), recalled_by = 'regress_actor_bob';
\echo :SQLSTATE
RESET ROLE;

-- bob recalls his own
SET ROLE regress_actor_bob;
UPDATE role_msgs SET recalled_at = now() WHERE id = 4;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT * FROM pg_temp.state('role_msgs');

-- an admin role under 'role': a bulk recall of bob, with a reason; the
-- actor is the admin's role, and the admin names no one else either
SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_mod;
SET recall.actor = 'someone_else';
SELECT recall.recall_sender('role_msgs', 'regress_actor_bob', 'spam');
\echo :SQLSTATE
RESET recall.actor;
SELECT recall.recall_sender('role_msgs', 'regress_actor_bob', NULL);
\echo :SQLSTATE
SELECT recall.recall_sender('role_msgs', 'regress_actor_bob', 'spam');
SELECT recall.recall('role_msgs', 9, reason => 'cleanup');
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT * FROM pg_temp.state('role_msgs');
SELECT pk, actor, db_role, reason FROM recall.audit
WHERE tbl = 'role_msgs'::regclass ORDER BY pk->>'id';

------------------------------------------------------------------------
-- actor_source 'setting' with a JSON claim: request.jwt.claims ->> 'sub'
------------------------------------------------------------------------
CREATE TABLE jwt_msgs (
    id      int PRIMARY KEY,
    conv    int NOT NULL,
    sender  text NOT NULL,
    body    text
);
INSERT INTO jwt_msgs VALUES
    (1, 1, 'u1', 'u1 one'), (2, 1, 'u2', 'u2 two'), (3, 1, 'u1', 'u1 three'),
    (4, 2, 'u1', 'u1 four'), (5, 2, 'u1', 'u1 five'), (6, 2, 'u2', 'u2 six'),
    (7, 3, '42', 'numeric sub'), (8, 3, 'u1', 'u1 eight');
SELECT recall.enable('jwt_msgs', '{body}', sender => 'sender', conversation => 'conv',
                     actor_source => 'setting', actor_setting => 'request.jwt.claims',
                     actor_claim => 'sub');
SELECT actor_source, actor_setting, actor_claim FROM recall.tables
WHERE tbl = 'jwt_msgs'::regclass;
GRANT SELECT, UPDATE ON jwt_msgs TO regress_actor_web;

SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_web;
-- no claims at all (the setting was never set): a missing identity
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 1;
\echo :SQLSTATE
-- own message
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1", "role": "authenticated"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 1;
SELECT recall.recall('jwt_msgs', 3);
COMMIT;
-- another's message
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1", "role": "authenticated"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
ROLLBACK;
-- explicit recalled_by, recall.recall's actor or recall.actor of someone else
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1", "role": "authenticated"}', true);
UPDATE jwt_msgs SET recalled_at = now(), recalled_by = 'u2' WHERE id = 2;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1", "role": "authenticated"}', true);
SELECT recall.recall('jwt_msgs', 2, 'u2');
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1", "role": "authenticated"}', true);
SET LOCAL recall.actor = 'u2';
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
ROLLBACK;
-- the setting is now set but empty (after a transaction-local value)
SELECT current_setting('request.jwt.claims', true) AS claims;
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
-- an empty sub, a JSON null sub, no sub, claims that are no JSON object
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "", "role": "authenticated"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": null}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"role": "anon"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', 'sub=u1', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '["u1"]', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '"u1"', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 4;
\echo :SQLSTATE
ROLLBACK;
-- a claim that is a JSON number is compared as text
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": 42}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE id = 7;
COMMIT;
-- a bulk recall of a conversation: every row gets the claim's actor, and
-- one of them not u1's fails the statement as a whole
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE conv = 2;
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "u1"}', true);
UPDATE jwt_msgs SET recalled_at = now() WHERE conv = 2 AND sender = 'u1';
-- and through MERGE
MERGE INTO jwt_msgs m USING (VALUES (8)) AS s(id) ON m.id = s.id
WHEN MATCHED THEN UPDATE SET recalled_at = now();
COMMIT;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT * FROM pg_temp.state('jwt_msgs');

------------------------------------------------------------------------
-- actor_source 'setting' without a claim: the setting is the actor
------------------------------------------------------------------------
CREATE TABLE app_msgs (id int PRIMARY KEY, sender text NOT NULL, body text);
INSERT INTO app_msgs VALUES (1, 'u1', 'one'), (2, 'u2', 'two'), (3, 'u1', 'three');
SELECT recall.enable('app_msgs', '{body}', sender => 'sender',
                     actor_source => 'setting', actor_setting => 'app.user_id');
GRANT SELECT, UPDATE ON app_msgs TO regress_actor_web;
SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_web;
UPDATE app_msgs SET recalled_at = now() WHERE id = 1;
\echo :SQLSTATE
SET app.user_id = '';
UPDATE app_msgs SET recalled_at = now() WHERE id = 1;
\echo :SQLSTATE
SET app.user_id = 'u1';
UPDATE app_msgs SET recalled_at = now() WHERE id = 1;
UPDATE app_msgs SET recalled_at = now() WHERE id = 2;
\echo :SQLSTATE
UPDATE app_msgs SET recalled_at = now(), recalled_by = 'u2' WHERE id = 2;
\echo :SQLSTATE
SELECT recall.recall('app_msgs', 3, 'u1');
RESET app.user_id;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT * FROM pg_temp.state('app_msgs');

------------------------------------------------------------------------
-- Bad option combinations: 22023, nothing changed
------------------------------------------------------------------------
SELECT recall.enable('app_msgs', '{body}', sender => 'sender', actor_source => 'jwt');
\echo :SQLSTATE
SELECT recall.enable('app_msgs', '{body}', sender => 'sender', actor_source => 'setting');
\echo :SQLSTATE
SELECT recall.enable('app_msgs', '{body}', sender => 'sender', actor_source => 'role',
                     actor_setting => 'app.user_id');
\echo :SQLSTATE
SELECT recall.enable('app_msgs', '{body}', sender => 'sender', actor_source => 'statement',
                     actor_claim => 'sub');
\echo :SQLSTATE
SELECT recall.enable('role_msgs', '{body}', sender => 'sender', actor_claim => 'sub');
\echo :SQLSTATE
CREATE TABLE fresh_msgs (id int PRIMARY KEY, sender text, body text);
SELECT recall.enable('fresh_msgs', '{body}', actor_setting => 'app.user_id');
\echo :SQLSTATE
SELECT recall.enable('fresh_msgs', '{body}', actor_claim => 'sub');
\echo :SQLSTATE
SELECT count(*) AS fresh_registered FROM recall.tables WHERE tbl = 'fresh_msgs'::regclass;
SELECT tbl, actor_source, actor_setting, actor_claim FROM recall.tables
WHERE tbl IN ('role_msgs'::regclass, 'jwt_msgs'::regclass, 'app_msgs'::regclass)
ORDER BY tbl::text;

------------------------------------------------------------------------
-- Re-enabling without actor_source keeps the source; naming one switches
------------------------------------------------------------------------
ALTER TABLE role_msgs ADD COLUMN preview text;
ALTER TABLE jwt_msgs ADD COLUMN preview text;
SELECT recall.enable('role_msgs', '{body,preview}', sender => 'sender');
SELECT recall.enable('jwt_msgs', '{body,preview}', sender => 'sender', conversation => 'conv');
SELECT tbl, content, actor_source, actor_setting, actor_claim FROM recall.tables
WHERE tbl IN ('role_msgs'::regclass, 'jwt_msgs'::regclass)
ORDER BY tbl::text;
-- still enforced after the re-enable: alice cannot name bob
INSERT INTO role_msgs (id, sender, body) VALUES (10, 'regress_actor_bob', 'bob 10');
SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_alice;
UPDATE role_msgs SET recalled_at = now(), recalled_by = 'regress_actor_bob' WHERE id = 10;
\echo :SQLSTATE
RESET ROLE;
RESET SESSION AUTHORIZATION;
-- switching: to 'statement', then to 'setting' with a claim, then back
SELECT recall.enable('role_msgs', '{body,preview}', sender => 'sender',
                     actor_source => 'statement');
SELECT recall.enable('app_msgs', '{body}', sender => 'sender', actor_source => 'setting',
                     actor_setting => 'request.jwt.claims', actor_claim => 'sub');
SELECT tbl, actor_source, actor_setting, actor_claim FROM recall.tables
WHERE tbl IN ('role_msgs'::regclass, 'app_msgs'::regclass)
ORDER BY tbl::text;
-- under 'statement' again, the application names the actor
SET SESSION AUTHORIZATION regress_actor_authenticator;
SET ROLE regress_actor_alice;
UPDATE role_msgs SET recalled_at = now(), recalled_by = 'regress_actor_bob' WHERE id = 10;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT id, body, recalled_by FROM role_msgs WHERE id = 10;

SET client_min_messages = warning;
DROP TABLE role_msgs, jwt_msgs, app_msgs, fresh_msgs CASCADE;
RESET client_min_messages;
DROP ROLE regress_actor_authenticator, regress_actor_alice, regress_actor_bob,
          regress_actor_mod, regress_actor_web;
