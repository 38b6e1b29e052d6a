/* pg_recall--1.0--1.1.sql: from 1.0 to 1.1 (also the second half of a fresh 1.1 install) */

\echo Use "ALTER EXTENSION pg_recall UPDATE TO '1.1'" to load this file. \quit

-- What 1.1 changes:
--  * one trigger per enabled table, "~recall_guard" (BEFORE INSERT OR
--    UPDATE, FOR EACH ROW, ENABLE ALWAYS, no WHEN clause), instead of 1.0's
--    three triggers and its CHECK constraint recall_wiped: it writes the
--    event row itself and holds the invariant;
--  * the event log keeps one ordering index, (xid, seq); the jsonb (tbl, pk)
--    index gives way to a partial (tbl, key_hash) index, written only for
--    tables with copies; each event records where the recalled version's
--    bytes are (residue), for the targeted purge;
--  * erasure state for the purger, the rebuilder and the sweep;
--  * guards against DDL that would leave a table unguarded.

-- Registry: the zone a timestamp (without time zone) sent_at is read in.
ALTER TABLE recall.tables ADD COLUMN sent_at_timezone text;

-- Event log: one ordering index; key_hash and residue.
ALTER TABLE recall.events DROP CONSTRAINT events_pkey;
DROP INDEX recall.events_tbl_pk_idx;
ALTER TABLE recall.events ADD COLUMN key_hash bigint, ADD COLUMN residue oid[];
COMMENT ON COLUMN recall.events.key_hash IS
    'jsonb_hash_extended(pk, 0) when tbl has registered copies: a copy guard finds the recall of a deleted message through it';
COMMENT ON COLUMN recall.events.residue IS
    'where the recalled version''s bytes are, for the purge: pairs {relation, block}';
UPDATE recall.events e SET key_hash = pg_catalog.jsonb_hash_extended(e.pk, 0)
WHERE e.tbl IN (SELECT c.tbl FROM recall.copies c);
CREATE INDEX events_key_idx ON recall.events (tbl, key_hash) WHERE key_hash IS NOT NULL;

-- Erasure state (the purger's).  How far each table's recalled versions
-- have been erased: every event up to (xid, seq) in (xid, seq) order.
ALTER TABLE recall.purge_state ADD COLUMN seq bigint NOT NULL DEFAULT 0,
    ALTER COLUMN purged_at DROP NOT NULL;
REVOKE ALL ON recall.purge_state FROM PUBLIC;

-- Residue of copies wiped or deleted by a recall: a relation (a copy
-- table's leaf or its TOAST relation) and the blocks that held the old
-- versions, purged like an event's residue, then deleted.
CREATE TABLE recall.purge_queue (
    xid     xid8 NOT NULL,
    relid   oid NOT NULL,
    blocks  oid[] NOT NULL
);
REVOKE ALL ON recall.purge_queue FROM PUBLIC;

-- Indexes that hold content: dirty since their first recall after the last
-- rebuild (REINDEX CONCURRENTLY by the purger's rebuilder).
CREATE TABLE recall.index_state (
    indexrelid    oid PRIMARY KEY,
    tbl           regclass NOT NULL,
    dirty_since   timestamptz,     -- oldest purged recall not yet rebuilt away
    last_rebuild  timestamptz,
    dirtied_at    timestamptz,     -- last marked: a rebuild started later covers it
    failures      integer NOT NULL DEFAULT 0,  -- failed rebuilds in a row
    last_error    text,
    retry_at      timestamptz      -- after a failure, not before this
);
REVOKE ALL ON recall.index_state FROM PUBLIC;

-- The sweep's progress per heap or TOAST relation: pages changed since
-- last_lsn are zeroed by the next sweep.
CREATE TABLE recall.sweep_state (
    relid       oid PRIMARY KEY,
    tbl         regclass NOT NULL,
    last_lsn    pg_lsn,
    last_sweep  timestamptz
);
REVOKE ALL ON recall.sweep_state FROM PUBLIC;

-- C functions ---------------------------------------------------------------

COMMENT ON FUNCTION recall.guard_trigger() IS
    'BEFORE INSERT OR UPDATE row trigger: the recall (stamp, permission, wipe, event), frozen recalled rows, the invariant';

-- A driver's untyped parameter (node-postgres, psycopg, JDBC) cannot
-- resolve anyelement (42804); an id of unknown type resolves to this one,
-- the same C function, which casts the text to the key's type (or reads a
-- composite key's JSON object).  Typed ids keep resolving as before: no
-- implicit cast to text exists from the integer, uuid or jsonb types.
CREATE OR REPLACE FUNCTION recall.recall(tbl regclass, id text,
                              actor text DEFAULT NULL, reason text DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_recall' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall.recall(regclass, text, text, text) IS
    'recall one message by key given as text (an untyped parameter): true if recalled now, false if already recalled';

-- Both check that the caller owns the table, then write as the extension's
-- owner: callers need no privilege on the registry itself.

-- Reading the event log -----------------------------------------------------

-- Deletes, in C (dispatcher.c), events older than older_than that are
-- notified and purged, as the dispatcher does with recall.event_retention.
CREATE OR REPLACE FUNCTION recall.prune_events(older_than interval) RETURNS bigint
    AS 'MODULE_PATHNAME', 'recall_prune_events'
    LANGUAGE C CALLED ON NULL INPUT VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp;
-- recall.enable -------------------------------------------------------------
-- Runs with the caller's rights: every change to the user's table is DDL its
-- owner could run by hand.  Not pinned to a search_path, since the backfill
-- UPDATE fires the table's own triggers, which must see the caller's path;
-- every name of ours is schema-qualified instead.

-- A table's plain name, for messages.
CREATE OR REPLACE FUNCTION recall._relname(tbl regclass) RETURNS name
LANGUAGE sql STABLE STRICT AS $$
    SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = tbl
$$;

-- The view's name: <table>_visible, shortened to fit NAMEDATALEN.
CREATE OR REPLACE FUNCTION recall._view_name(relname name) RETURNS name
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    base text := relname;
BEGIN
    WHILE pg_catalog.octet_length(base || '_visible') > 63 LOOP
        base := pg_catalog.left(base, -1);
    END LOOP;
    RETURN base || '_visible';
END
$$;

-- Take a lock that blocks the table in short tries (50 ms), so that the
-- readers and writers queued behind the request never wait long; after 50
-- tries, one ordinary wait (the deadlock detector then sees a writer that
-- waits on a row this transaction changed).
CREATE OR REPLACE FUNCTION recall._lock_briefly(tbl regclass, mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    prev_timeout text := pg_catalog.current_setting('lock_timeout');
BEGIN
    IF mode NOT IN ('SHARE ROW EXCLUSIVE', 'ACCESS EXCLUSIVE') THEN
        RAISE EXCEPTION 'unrecognized lock mode "%"', mode USING ERRCODE = '22023';
    END IF;
    FOR attempt IN 1 .. 51 LOOP
        BEGIN
            IF attempt <= 50 THEN
                PERFORM pg_catalog.set_config('lock_timeout', '50ms', true);
            END IF;
            EXECUTE format('LOCK TABLE %s IN %s MODE', tbl, mode);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF attempt > 50 THEN
                RAISE;
            END IF;
            PERFORM pg_catalog.set_config('lock_timeout', prev_timeout, true);
            PERFORM pg_catalog.pg_sleep(0.1);
        END;
    END LOOP;
    PERFORM pg_catalog.set_config('lock_timeout', prev_timeout, true);
END
$$;

-- Refuse a table whose rows pg_recall could not guard: a temporary table
-- (its registry row would outlive it), and plain inheritance (rows of a
-- child are read and updated through its parent, but have no trigger).
CREATE OR REPLACE FUNCTION recall._check_protectable(tbl regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel pg_catalog.pg_class;
    other name;
BEGIN
    SELECT * INTO rel FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot enable recall on temporary table "%"', rel.relname
            USING ERRCODE = '0A000',
                  DETAIL = 'A temporary table ends with its session; pg_recall guards tables that last.';
    END IF;
    SELECT c.relname INTO other
    FROM pg_catalog.pg_inherits i
         JOIN pg_catalog.pg_class c ON c.oid = CASE WHEN i.inhparent = tbl THEN i.inhrelid ELSE i.inhparent END
         JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid
    WHERE (i.inhparent = tbl OR i.inhrelid = tbl) AND NOT k.relispartition
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot enable recall on table "%" with inheritance', rel.relname
            USING ERRCODE = '0A000',
                  DETAIL = format('Table "%s" inherits from or is inherited by "%s"; rows reached through plain inheritance would not be guarded.', rel.relname, other),
                  HINT = 'Use declarative partitioning (partitions are guarded), or detach the inheritance.';
    END IF;
END
$$;

-- Drop the triggers and constraint recall.enable() puts on a table (and
-- those of pg_recall 1.0: two more triggers and a CHECK constraint).
CREATE OR REPLACE FUNCTION recall._drop_objects(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT g.tgname FROM pg_catalog.pg_trigger g
             WHERE g.tgrelid = tbl AND NOT g.tgisinternal
               AND g.tgname IN ('~recall_guard', '~recall_event', '~recall_notify')
               AND g.tgparentid = 0
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', t, tbl);
    END LOOP;
    IF EXISTS (SELECT FROM pg_catalog.pg_constraint c
               WHERE c.conrelid = tbl AND c.conname = 'recall_wiped' AND c.contype = 'c') THEN
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT recall_wiped', tbl);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION recall.enable(tbl regclass, content name[],
                              sender name DEFAULT NULL,
                              sent_at name DEFAULT NULL,
                              conversation name DEFAULT NULL,
                              recall_window interval DEFAULT NULL,
                              channel text DEFAULT 'recall',
                              sent_at_unit text DEFAULT NULL,
                              on_recalled_write text DEFAULT 'error',
                              actor_source text DEFAULT NULL,
                              actor_setting text DEFAULT NULL,
                              actor_claim text DEFAULT NULL)
RETURNS regclass
LANGUAGE plpgsql AS $enable$
DECLARE
    rel          pg_catalog.pg_class;
    nsp          name;
    prev         recall.tables;
    had_prev     boolean;
    entry        recall.tables;
    keycols      name[];
    col          name;
    att          record;
    wiped        text[] := '{}';
    typ          oid;
    src          text;
    a_setting    text;
    a_claim      text;
    vname        name;
    vcols        text;
    present      text[] := '{}';
    others       text;
    g            record;
    recall_cols  constant name[] := ARRAY['recalled_at', 'recalled_by', 'recall_reason'];
    typ_sent_at  oid;
    since        xid8;
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = '22004';
    END IF;
    rel := recall._check_owner(tbl, 'enable recall on');
    SELECT n.nspname INTO nsp FROM pg_catalog.pg_namespace n WHERE n.oid = rel.relnamespace;
    PERFORM recall._check_protectable(tbl);

    SELECT * INTO prev FROM recall.tables t WHERE t.tbl = enable.tbl;
    had_prev := FOUND;

    -- The message key: primary key, else the replica identity index.
    SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord) INTO keycols
    FROM pg_catalog.pg_index i
         CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = tbl AND i.indisprimary;
    IF keycols IS NULL THEN
        SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord) INTO keycols
        FROM pg_catalog.pg_index i
             CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = tbl AND i.indisreplident;
    END IF;
    IF keycols IS NULL THEN
        RAISE EXCEPTION 'table "%" has no primary key or replica identity index', rel.relname
            USING ERRCODE = '42P16',
                  DETAIL = 'pg_recall identifies each message by its key.',
                  HINT = 'Add a primary key, or run ALTER TABLE ... REPLICA IDENTITY USING INDEX with a unique index over NOT NULL columns.';
    END IF;

    -- Content columns and their wiped values.
    IF content IS NULL OR pg_catalog.cardinality(content) = 0 THEN
        RAISE EXCEPTION 'content must name at least one column'
            USING ERRCODE = '22023';
    END IF;
    FOREACH col IN ARRAY content LOOP
        IF col IS NULL THEN
            RAISE EXCEPTION 'content column names must not be null' USING ERRCODE = '22023';
        END IF;
        SELECT a.attnum, a.atttypid, a.attnotnull, a.attgenerated INTO att
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, rel.relname
                USING ERRCODE = '42703';
        END IF;
        IF col = ANY (keycols) THEN
            RAISE EXCEPTION 'content column "%" is part of the message key of table "%"', col, rel.relname
                USING ERRCODE = '22023',
                      DETAIL = 'The key identifies a recalled message and is never wiped.';
        END IF;
        IF col = ANY (recall_cols) THEN
            RAISE EXCEPTION 'column "%" is a recall column and cannot be content', col
                USING ERRCODE = '22023';
        END IF;
        IF att.attgenerated <> '' THEN
            RAISE EXCEPTION 'content column "%" is a generated column', col
                USING ERRCODE = '22023',
                      HINT = 'List the columns it is generated from; it is recomputed from their wiped values.';
        END IF;
        IF (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(content) AS u(c) WHERE u.c = col) > 1 THEN
            RAISE EXCEPTION 'content column "%" is listed more than once', col
                USING ERRCODE = '22023';
        END IF;
        wiped := pg_catalog.array_append(wiped, recall._wiped_value(tbl, col));
    END LOOP;

    -- Optional columns.
    FOR g IN SELECT * FROM (VALUES ('sender', sender), ('sent_at', enable.sent_at),
                                   ('conversation', conversation)) AS v(opt, c)
             WHERE v.c IS NOT NULL LOOP
        PERFORM FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = g.c AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', g.c, rel.relname
                USING ERRCODE = '42703';
        END IF;
        IF g.c = ANY (recall_cols) OR g.c = ANY (content) THEN
            RAISE EXCEPTION '% column "%" cannot be a recall or content column', g.opt, g.c
                USING ERRCODE = '22023';
        END IF;
    END LOOP;

    IF enable.sent_at IS NOT NULL THEN
        SELECT recall._base_type(a.atttypid) INTO typ
        FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = enable.sent_at;
        typ_sent_at := typ;
        IF typ IN ('pg_catalog.timestamp'::regtype, 'pg_catalog.timestamptz'::regtype) THEN
            IF sent_at_unit IS NOT NULL THEN
                RAISE EXCEPTION 'sent_at_unit applies only to an integer sent_at column'
                    USING ERRCODE = '22023',
                          DETAIL = format('Column "%s" is of type %s.', enable.sent_at, typ::regtype);
            END IF;
        ELSIF typ IN ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype) THEN
            IF sent_at_unit IS NULL THEN
                RAISE EXCEPTION 'integer sent_at column "%" needs sent_at_unit', enable.sent_at
                    USING ERRCODE = '22023',
                          HINT = 'Pass sent_at_unit => ''s'' for epoch seconds or ''ms'' for epoch milliseconds.';
            ELSIF sent_at_unit NOT IN ('s', 'ms') THEN
                RAISE EXCEPTION 'unrecognized sent_at_unit "%"', sent_at_unit
                    USING ERRCODE = '22023', HINT = 'Use ''s'' or ''ms''.';
            END IF;
        ELSE
            RAISE EXCEPTION 'sent_at column "%" must be of type timestamp, timestamptz or an integer type', enable.sent_at
                USING ERRCODE = '22023',
                      DETAIL = format('It is of type %s.', typ::regtype);
        END IF;
    ELSIF sent_at_unit IS NOT NULL THEN
        RAISE EXCEPTION 'sent_at_unit needs a sent_at column' USING ERRCODE = '22023';
    END IF;

    IF recall_window IS NOT NULL THEN
        IF sender IS NULL OR enable.sent_at IS NULL THEN
            RAISE EXCEPTION 'recall_window needs both a sender and a sent_at column'
                USING ERRCODE = '22023';
        END IF;
        IF recall_window < '0'::interval THEN
            RAISE EXCEPTION 'recall_window must not be negative'
                USING ERRCODE = '22023';
        END IF;
    END IF;

    IF channel IS NULL OR channel = '' OR pg_catalog.octet_length(channel) > 63 THEN
        RAISE EXCEPTION 'invalid notification channel name'
            USING ERRCODE = '22023',
                  DETAIL = 'A channel name is 1 to 63 bytes long.';
    END IF;
    IF on_recalled_write IS NULL OR on_recalled_write NOT IN ('error', 'keep_wiped') THEN
        RAISE EXCEPTION 'unrecognized on_recalled_write value "%"', on_recalled_write
            USING ERRCODE = '22023', HINT = 'Use ''error'' or ''keep_wiped''.';
    END IF;

    -- Who the actor is: a NULL source keeps the current one, never weakens it.
    IF actor_source IS NULL AND had_prev THEN
        src := prev.actor_source;
        a_setting := coalesce(actor_setting, prev.actor_setting);
        a_claim := coalesce(actor_claim, prev.actor_claim);
    ELSE
        src := coalesce(actor_source, 'statement');
        a_setting := actor_setting;
        a_claim := actor_claim;
    END IF;
    IF src NOT IN ('statement', 'role', 'setting') THEN
        RAISE EXCEPTION 'unrecognized actor_source "%"', src
            USING ERRCODE = '22023', HINT = 'Use ''statement'', ''role'' or ''setting''.';
    END IF;
    IF src = 'setting' AND (a_setting IS NULL OR a_setting = '') THEN
        RAISE EXCEPTION 'actor_source ''setting'' needs actor_setting'
            USING ERRCODE = '22023',
                  HINT = 'Name the setting that holds the actor, e.g. actor_setting => ''request.jwt.claims''.';
    END IF;
    IF src <> 'setting' AND (a_setting IS NOT NULL OR a_claim IS NOT NULL) THEN
        RAISE EXCEPTION 'actor_setting and actor_claim need actor_source ''setting'''
            USING ERRCODE = '22023';
    END IF;
    IF a_claim = '' THEN
        RAISE EXCEPTION 'actor_claim must not be empty' USING ERRCODE = '22023';
    END IF;

    -- Existing recall columns must have the right types.
    FOR att IN
        SELECT a.attname, a.atttypid,
               CASE a.attname WHEN 'recalled_at' THEN 'pg_catalog.timestamptz'::regtype
                              ELSE 'pg_catalog.text'::regtype END AS want
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = ANY (recall_cols) AND NOT a.attisdropped
    LOOP
        IF att.atttypid <> att.want THEN
            RAISE EXCEPTION 'column "%" of relation "%" is of type % but recall needs %',
                            att.attname, rel.relname, att.atttypid::regtype, att.want
                USING ERRCODE = '42804',
                      HINT = 'Rename or drop the column, or change its type.';
        END IF;
        present := present || att.attname::text;
    END LOOP;

    -- Everything is checked.  Rows recalled before (an earlier enable, or
    -- data loaded with the recall columns) get every content column wiped,
    -- new ones included: first while the table stays in use (pass 1, in
    -- batches), then, after the catalog changes, for the recalls made
    -- meanwhile (pass 2, from the event log).
    IF pg_catalog.cardinality(present) = 3 THEN
        since := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
        PERFORM recall._backfill(tbl, content);
    END IF;

    -- The catalog changes take a lock that blocks the table for as long as
    -- they last (short); wait for it in short tries, so that the readers
    -- and writers queued behind this request never wait long either.
    PERFORM recall._lock_briefly(tbl, 'ACCESS EXCLUSIVE');

    PERFORM recall._drop_objects(tbl);

    IF NOT 'recalled_at' = ANY (present) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN recalled_at timestamptz', tbl);
    END IF;
    IF NOT 'recalled_by' = ANY (present) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN recalled_by text', tbl);
    END IF;
    IF NOT 'recall_reason' = ANY (present) THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN recall_reason text', tbl);
    END IF;

    entry.tbl := tbl;
    entry.key_columns := keycols;
    entry.content := content;
    entry.wiped_values := wiped;
    entry.sender := sender;
    entry.sent_at := enable.sent_at;
    entry.sent_at_unit := sent_at_unit;
    entry.conversation := conversation;
    entry.recall_window := recall_window;
    entry.channel := channel;
    entry.on_recalled_write := on_recalled_write;
    entry.actor_source := src;
    entry.actor_setting := a_setting;
    entry.actor_claim := a_claim;
    entry.view_name := recall._view_name(rel.relname);
    entry.enabled_at := pg_catalog.now();
    -- a timestamp (without time zone) sent_at is read in today's zone, for good
    IF typ_sent_at = 'pg_catalog.timestamp'::regtype THEN
        entry.sent_at_timezone := pg_catalog.current_setting('TimeZone');
    END IF;
    PERFORM recall._registry_put(entry);

    -- Named to sort after every ordinary trigger name: BEFORE triggers fire
    -- in name order, so the wipe comes last.  ALWAYS: under
    -- session_replication_role = replica it still holds the invariant.
    -- (With Citus the trigger carries the settings to the shards: see the
    -- Citus section at the end.)
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION recall.guard_trigger(%s)', '~recall_guard', tbl,
                   recall._guard_args(tbl));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', tbl, '~recall_guard');
    IF since IS NOT NULL THEN
        PERFORM recall._backfill(tbl, content, since);
    END IF;

    -- Content statistics would keep most common values in pg_statistic.
    -- (A Citus table's rows are on its shards, each cleared as it gets the
    -- guard.)
    FOREACH col IN ARRAY content LOOP
        EXIT WHEN recall._citus_table(tbl);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS 0', tbl, col);
        PERFORM recall._clear_statistics(tbl, col);
    END LOOP;

    -- The filtered view, with the caller's privileges and row-level security.
    vname := entry.view_name;
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO vcols
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
      AND a.attname <> ALL (recall_cols);
    BEGIN
        EXECUTE format('CREATE OR REPLACE VIEW %I.%I WITH (security_invoker = true) AS '
                       'SELECT %s FROM %s WHERE recalled_at IS NULL', nsp, vname, vcols, tbl);
    EXCEPTION WHEN invalid_table_definition OR datatype_mismatch THEN
        -- columns were dropped or changed since the last enable
        EXECUTE format('DROP VIEW %I.%I', nsp, vname);
        EXECUTE format('CREATE VIEW %I.%I WITH (security_invoker = true) AS '
                       'SELECT %s FROM %s WHERE recalled_at IS NULL', nsp, vname, vcols, tbl);
    END;
    IF (SELECT c.relowner FROM pg_catalog.pg_class c
        WHERE c.relname = vname AND c.relnamespace = rel.relnamespace) <> rel.relowner THEN
        EXECUTE format('ALTER VIEW %I.%I OWNER TO %I', nsp, vname,
                       (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = rel.relowner));
    END IF;
    -- Whoever may read the table may read its view.
    FOR g IN SELECT DISTINCT a.grantee
             FROM pg_catalog.aclexplode(rel.relacl) AS a
             WHERE a.privilege_type = 'SELECT' AND a.grantee <> rel.relowner LOOP
        IF g.grantee = 0 THEN
            EXECUTE format('GRANT SELECT ON %I.%I TO PUBLIC', nsp, vname);
        ELSE
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', nsp, vname,
                           (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = g.grantee));
        END IF;
    END LOOP;

    -- Tell the DBA what could still copy the text elsewhere.
    SELECT pg_catalog.string_agg(format('%I', t.tgname), ', ' ORDER BY t.tgname) INTO others
    FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid = tbl AND NOT t.tgisinternal AND (t.tgtype & 1) = 1
      AND t.tgname NOT IN ('~recall_guard', '~recall_copy_guard', '~recall_copy_delete');
    IF others IS NOT NULL THEN
        RAISE NOTICE 'table "%" has other row triggers: %', rel.relname, others
            USING DETAIL = 'They see the recalled content in OLD and could copy it elsewhere.',
                  HINT = 'Register such copies with recall.add_copy(), or list the columns they fill as content.';
    END IF;
    SELECT pg_catalog.string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO others
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
      AND recall._base_type(a.atttypid) = 'pg_catalog.tsvector'::regtype
      AND a.attname <> ALL (content) AND a.attgenerated = '';
    IF others IS NOT NULL THEN
        RAISE NOTICE 'table "%" has tsvector columns that are not content: %', rel.relname, others
            USING DETAIL = 'A search vector keeps the words of a recalled message.',
                  HINT = 'List them in content so that they are wiped too.';
    END IF;

    RETURN format('%I.%I', nsp, vname)::regclass;
END
$enable$;
-- recall.recall_sender: an admin's bulk recall of one author's messages ------

-- Copies ------------------------------------------------------------------

-- (Re)create the guard triggers of a copy table from its registrations.
CREATE OR REPLACE FUNCTION recall._copy_guards(copy regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    has_any     boolean;
    has_delete  boolean;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = copy AND g.tgname = '~recall_copy_guard' AND g.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER "~recall_copy_guard" ON %s', copy);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = copy AND g.tgname = '~recall_copy_delete' AND g.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER "~recall_copy_delete" ON %s', copy);
    END IF;

    -- (rows whose match columns are null are let through by the C function,
    -- cheaper than a WHEN clause, which is parsed again by every statement)
    SELECT pg_catalog.bool_or(true), pg_catalog.bool_or(x.action = 'delete')
      INTO has_any, has_delete
    FROM recall.copies x WHERE x.copy = _copy_guards.copy;

    IF has_any THEN
        EXECUTE format('CREATE TRIGGER "~recall_copy_guard" BEFORE INSERT OR UPDATE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION recall.copy_guard_trigger()', copy);
    END IF;
    IF has_delete THEN
        EXECUTE format('CREATE TRIGGER "~recall_copy_delete" AFTER UPDATE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION recall.copy_guard_trigger()', copy);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION recall.add_copy(tbl regclass, copy regclass, match name[],
                                content name[] DEFAULT NULL,
                                action text DEFAULT 'wipe')
RETURNS void
LANGUAGE plpgsql AS $add_copy$
DECLARE
    crel    pg_catalog.pg_class;
    cfg     recall.tables;
    entry   recall.copies;
    col     name;
    att     record;
    wiped   text[] := '{}';
    keytyp  oid;
    i       integer;
    conds   text[] := '{}';
    sets    text;
    since   xid8;
BEGIN
    IF tbl IS NULL OR copy IS NULL THEN
        RAISE EXCEPTION 'table and copy must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM recall._check_owner(tbl, 'register copies of');
    crel := recall._check_owner(copy, 'register copies in');
    PERFORM recall._citus_check_copy(tbl, copy);
    SELECT * INTO cfg FROM recall.tables t WHERE t.tbl = add_copy.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not enabled for recall', recall._relname(tbl)
            USING ERRCODE = '55000', HINT = 'Call recall.enable() on the table first.';
    END IF;
    IF action IS NULL OR action NOT IN ('wipe', 'delete') THEN
        RAISE EXCEPTION 'unrecognized copy action "%"', action
            USING ERRCODE = '22023', HINT = 'Use ''wipe'' or ''delete''.';
    END IF;

    IF match IS NULL OR pg_catalog.cardinality(match) <> pg_catalog.cardinality(cfg.key_columns) THEN
        RAISE EXCEPTION 'match must name % column(s), one per key column of table "%"',
                        pg_catalog.cardinality(cfg.key_columns), recall._relname(tbl)
            USING ERRCODE = '22023',
                  DETAIL = format('The key of table %s is (%s).', tbl,
                                  pg_catalog.array_to_string(cfg.key_columns, ', '));
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(match) LOOP
        SELECT a.atttypid INTO att FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = copy AND a.attname = match[i] AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND OR match[i] IS NULL THEN
            RAISE EXCEPTION 'column "%" of relation "%" does not exist', match[i], crel.relname
                USING ERRCODE = '42703';
        END IF;
        SELECT a.atttypid INTO keytyp FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = tbl AND a.attname = cfg.key_columns[i];
        BEGIN
            EXECUTE format('SELECT NULL::%s::%s, NULL::%s::%s',
                           keytyp::regtype, att.atttypid::regtype, att.atttypid::regtype, keytyp::regtype);
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'match column "%" of type % cannot hold key column "%" of type %',
                            match[i], att.atttypid::regtype, cfg.key_columns[i], keytyp::regtype
                USING ERRCODE = '22023';
        END;
    END LOOP;

    IF action = 'wipe' THEN
        IF content IS NULL OR pg_catalog.cardinality(content) = 0 THEN
            RAISE EXCEPTION 'a ''wipe'' copy needs content columns' USING ERRCODE = '22023';
        END IF;
        FOREACH col IN ARRAY content LOOP
            IF col IS NULL OR NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                          WHERE a.attrelid = copy AND a.attname = col
                                            AND a.attnum > 0 AND NOT a.attisdropped) THEN
                RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, crel.relname
                    USING ERRCODE = '42703';
            END IF;
            IF col = ANY (match) THEN
                RAISE EXCEPTION 'content column "%" is a match column', col USING ERRCODE = '22023';
            END IF;
            IF copy = tbl AND col = ANY (cfg.key_columns) THEN
                RAISE EXCEPTION 'content column "%" is part of the message key', col USING ERRCODE = '22023';
            END IF;
            IF (SELECT pg_catalog.count(*) FROM pg_catalog.unnest(content) AS u(c) WHERE u.c = col) > 1 THEN
                RAISE EXCEPTION 'content column "%" is listed more than once', col USING ERRCODE = '22023';
            END IF;
            wiped := pg_catalog.array_append(wiped, recall._wiped_value(copy, col));
        END LOOP;
    ELSIF content IS NOT NULL AND pg_catalog.cardinality(content) > 0 THEN
        RAISE EXCEPTION 'a ''delete'' copy takes no content columns' USING ERRCODE = '22023';
    END IF;

    -- a copy lookup must not scan the table
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_index x
        WHERE x.indrelid = copy
          AND (SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord)
               FROM pg_catalog.unnest(x.indkey[0:pg_catalog.cardinality(match) - 1])
                    WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = copy AND a.attnum = k.attnum)
              @> match)
    THEN
        RAISE NOTICE 'no index of % starts with the match columns (%)', copy,
                     pg_catalog.array_to_string(match, ', ')
            USING DETAIL = 'Each recall then scans the copy table.',
                  HINT = format('CREATE INDEX ON %s (%s);', copy,
                                (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(m), ', ')
                                 FROM pg_catalog.unnest(match) AS u(m)));
    END IF;

    entry.tbl := tbl;
    entry.copy := copy;
    entry.match := match;
    entry.content := CASE WHEN action = 'wipe' THEN content END;
    entry.wiped_values := CASE WHEN action = 'wipe' THEN wiped END;
    entry.action := action;
    PERFORM recall._copies_put(entry);

    -- Copies of messages recalled already (or recalled and deleted) at once,
    -- while the copy table stays in use; then the guards, under a lock taken
    -- in short tries; then the copies of the messages recalled meanwhile
    -- (from the event log: an index lookup per message, not a scan).
    since := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
    PERFORM recall._treat_existing_copies(tbl, copy, match);
    PERFORM recall._lock_briefly(copy, 'SHARE ROW EXCLUSIVE');
    PERFORM recall._copy_guards(copy);
    PERFORM recall._treat_existing_copies(tbl, copy, match, since);
END
$add_copy$;

-- Erasure -------------------------------------------------------------------
-- (erasure helper's block: recall.purge(), recall.purge_status and their
-- helpers; the state tables are above)

CREATE OR REPLACE FUNCTION recall.purge(tbl regclass DEFAULT NULL)
    RETURNS TABLE (relation regclass, kind text, pages_scanned bigint,
                   pages_scrubbed bigint, bytes_zeroed bigint, rebuilt boolean)
    AS 'MODULE_PATHNAME', 'recall_purge' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall.purge(regclass) IS
    'erase now the heap and TOAST pages recalls left their old bytes on (NULL: every table you own); content indexes are left to the rebuilder';

-- The three clocks as intervals (NULL: off), for recall.purge_status.
CREATE OR REPLACE FUNCTION recall._erasure_settings(OUT purge_delay interval,
                                         OUT index_rebuild_interval interval,
                                         OUT sweep_interval interval)
    AS 'MODULE_PATHNAME', 'recall_erasure_settings' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION recall._erasure_settings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recall._erasure_settings() TO recall_admin;

-- What erasure has pending, per enabled table (index NULL) and per content
-- index (the indexes a purge has marked at least once).  An index that is
-- gone is left out by its pg_index row, not its pg_class row: Citus hides
-- the pg_class rows of shards (and their indexes) from ordinary sessions.
CREATE VIEW recall.purge_status AS
WITH s AS (SELECT * FROM recall._erasure_settings()),
pending AS (
    SELECT t.tbl, pg_catalog.count(e.seq) AS n, pg_catalog.min(e.recalled_at) AS oldest
    FROM recall.tables t
    LEFT JOIN recall.purge_state p ON p.tbl = t.tbl
    LEFT JOIN recall.events e ON e.tbl = t.tbl
        AND (p.xid IS NULL OR e.xid > p.xid OR (e.xid = p.xid AND e.seq > p.seq))
    GROUP BY t.tbl),
swept AS (
    SELECT w.tbl, pg_catalog.min(w.last_sweep) AS last_sweep,
           pg_catalog.bool_or(w.last_sweep IS NULL) AS unswept
    FROM recall.sweep_state w GROUP BY w.tbl)
SELECT t.tbl,
       NULL::regclass AS index,
       pd.n AS pending_recalls,
       pd.oldest AS oldest_pending,
       p.purged_at AS last_purge,
       pd.oldest + s.purge_delay / 2 AS purge_due,
       NULL::timestamptz AS dirty_since,
       NULL::timestamptz AS last_rebuild,
       NULL::timestamptz AS next_rebuild,
       NULL::text AS last_error,
       w.last_sweep,
       CASE WHEN s.sweep_interval IS NULL THEN NULL
            WHEN w.unswept OR w.tbl IS NULL THEN pg_catalog.now()
            ELSE w.last_sweep + s.sweep_interval END AS next_sweep
FROM recall.tables t
CROSS JOIN s
JOIN pending pd ON pd.tbl = t.tbl
LEFT JOIN recall.purge_state p ON p.tbl = t.tbl
LEFT JOIN swept w ON w.tbl = t.tbl
UNION ALL
SELECT i.tbl,
       i.indexrelid::regclass,
       NULL, NULL, NULL, NULL,
       i.dirty_since,
       i.last_rebuild,
       CASE WHEN i.dirty_since IS NOT NULL AND s.index_rebuild_interval IS NOT NULL
            THEN GREATEST(i.dirty_since + s.index_rebuild_interval / 2, i.retry_at) END,
       i.last_error,
       NULL, NULL
FROM recall.index_state i
CROSS JOIN s
JOIN pg_catalog.pg_index x ON x.indexrelid = i.indexrelid;
COMMENT ON VIEW recall.purge_status IS
    'erasure per enabled table (index NULL) and per content index: recalls not yet purged, last purge, index rebuilds, sweeps';
REVOKE ALL ON recall.purge_status FROM PUBLIC;
GRANT SELECT ON recall.purge_status TO recall_admin;
-- (end of the erasure helper's block)

-- 1.1: an optional xid restricts the treatment to messages recalled since
DROP FUNCTION recall._treat_existing_copies(regclass, regclass, name[]);
CREATE FUNCTION recall._treat_existing_copies(tbl regclass, copy regclass, match name[],
                                              since xid8 DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'recall_treat_existing_copies' LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE OR REPLACE FUNCTION recall._backfill(tbl regclass, content name[], since xid8 DEFAULT NULL)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'recall_backfill' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall._backfill(regclass, name[], xid8) IS
    'wipe content columns of rows recalled before they were listed (enable(); owner only)';

-- With pg_recall preloaded, start this database's dispatcher at commit.
CREATE OR REPLACE FUNCTION recall._wake_dispatcher() RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_wake_dispatcher' LANGUAGE C VOLATILE;
SELECT recall._wake_dispatcher();

-- Keep the registry in step with DROP TABLE.
CREATE OR REPLACE FUNCTION recall._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    copies oid[];
    cp     oid;
BEGIN
    WITH gone AS (
        DELETE FROM recall.copies c
        USING pg_catalog.pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
          AND d.objid IN (c.tbl::oid, c.copy::oid)
        RETURNING c.copy)
    SELECT pg_catalog.array_agg(DISTINCT g.copy::oid) INTO copies FROM gone g;
    -- a copy table that is still there loses the guards of the dropped table
    FOR cp IN SELECT u.o FROM pg_catalog.unnest(copies) AS u(o)
              WHERE EXISTS (SELECT FROM pg_catalog.pg_class k WHERE k.oid = u.o) LOOP
        PERFORM recall._copy_guards(cp::regclass);
    END LOOP;
    DELETE FROM recall.purge_state p
    USING pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = p.tbl::oid
      AND d.objsubid = 0;
    DELETE FROM recall.tables t
    USING pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = t.tbl::oid
      AND d.objsubid = 0;
END
$$;

-- Keep what pg_recall relies on from being changed under it -----------------

-- The columns the registry names for a table (as message table or copy),
-- with what they are registered as.
CREATE OR REPLACE FUNCTION recall._registered_columns(rel oid)
RETURNS TABLE (col name, what text, tbl regclass)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT u.col, u.what, t.tbl
    FROM recall.tables t,
         LATERAL (SELECT k, 'a key column' FROM unnest(t.key_columns) AS k
                  UNION ALL SELECT c, 'a content column' FROM unnest(t.content) AS c
                  UNION ALL SELECT r, 'a recall column'
                            FROM unnest(ARRAY['recalled_at', 'recalled_by', 'recall_reason']::name[]) AS r
                  UNION ALL SELECT t.sender, 'the sender column' WHERE t.sender IS NOT NULL
                  UNION ALL SELECT t.sent_at, 'the sent_at column' WHERE t.sent_at IS NOT NULL
                  UNION ALL SELECT t.conversation, 'the conversation column'
                            WHERE t.conversation IS NOT NULL) AS u(col, what)
    WHERE t.tbl::oid = rel
    UNION ALL
    SELECT u.col, u.what, c.tbl
    FROM recall.copies c,
         LATERAL (SELECT m, 'a match column of a copy' FROM unnest(c.match) AS m
                  UNION ALL SELECT x, 'a content column of a copy'
                            FROM unnest(coalesce(c.content, '{}'::name[])) AS x) AS u(col, what)
    WHERE c.copy::oid = rel
$$;

-- Refuse inheritance around an enabled table or a copy: its rows would be
-- read and updated through a relative that has no guard.
CREATE OR REPLACE FUNCTION recall._check_inheritance(rel oid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parent oid;
    child  oid;
BEGIN
    SELECT i.inhparent, i.inhrelid INTO parent, child
    FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
    WHERE (i.inhrelid = rel OR i.inhparent = rel) AND NOT k.relispartition
      AND (EXISTS (SELECT FROM recall.tables t WHERE t.tbl::oid IN (i.inhparent, i.inhrelid))
           OR EXISTS (SELECT FROM recall.copies c WHERE c.copy::oid IN (i.inhparent, i.inhrelid)))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'cannot make table "%" inherit from "%"',
                        (SELECT relname FROM pg_class WHERE oid = child),
                        (SELECT relname FROM pg_class WHERE oid = parent)
            USING ERRCODE = '0A000',
                  DETAIL = 'pg_recall guards one of them; rows reached through plain inheritance would not be guarded.',
                  HINT = 'Use declarative partitioning (partitions are guarded).';
    END IF;
END
$$;

-- After ALTER TABLE, CREATE TABLE, CREATE or ALTER TRIGGER: registered
-- columns still there under their names, no inheritance, the guard still
-- the last BEFORE ROW trigger and firing ALWAYS.
CREATE OR REPLACE FUNCTION recall._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cmd    record;
    rel    oid;
    r      record;
    late   name;
    mode   "char";
BEGIN
    IF NOT EXISTS (SELECT FROM recall.tables) THEN
        RETURN;
    END IF;
    FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF cmd.classid = 'pg_catalog.pg_trigger'::regclass THEN
            SELECT g.tgrelid INTO rel FROM pg_trigger g WHERE g.oid = cmd.objid;
        ELSIF cmd.classid = 'pg_catalog.pg_class'::regclass THEN
            rel := cmd.objid;
        ELSE
            CONTINUE;
        END IF;
        IF rel IS NULL THEN
            CONTINUE;
        END IF;

        FOR r IN SELECT * FROM recall._registered_columns(rel) c
                 WHERE NOT EXISTS (SELECT FROM pg_attribute a
                                   WHERE a.attrelid = rel AND a.attname = c.col
                                     AND a.attnum > 0 AND NOT a.attisdropped) LOOP
            RAISE EXCEPTION 'cannot rename column "%" of table "%"', r.col,
                            (SELECT relname FROM pg_class WHERE oid = rel)
                USING ERRCODE = '0A000',
                      DETAIL = format('Column "%s" is registered with pg_recall as %s of table %s.',
                                      r.col, r.what, r.tbl),
                      HINT = 'Disable recall (recall.disable or recall.drop_copy) first, then register the table again.';
        END LOOP;

        PERFORM recall._check_inheritance(rel);

        -- the guard of an enabled table (or of one of its partitions)
        IF EXISTS (SELECT FROM pg_trigger g WHERE g.tgrelid = rel AND g.tgname = '~recall_guard') THEN
            SELECT g.tgenabled INTO mode FROM pg_trigger g
            WHERE g.tgrelid = rel AND g.tgname = '~recall_guard';
            -- (enable() creates it, then makes it ALWAYS: only ALTER TABLE counts)
            IF mode <> 'A' AND cmd.command_tag = 'ALTER TABLE' THEN
                RAISE WARNING 'trigger "~recall_guard" of table "%" no longer fires always',
                              (SELECT relname FROM pg_class WHERE oid = rel)
                    USING DETAIL = 'Recalls on the table are not enforced while it is disabled or fires only in some replication roles.',
                          HINT = format('ALTER TABLE %s ENABLE ALWAYS TRIGGER "~recall_guard";', rel::regclass);
            END IF;
            SELECT g.tgname INTO late FROM pg_trigger g
            WHERE g.tgrelid = rel AND NOT g.tgisinternal AND g.tgenabled <> 'D'
              AND (g.tgtype & 1) = 1 AND (g.tgtype & 2) = 2 AND (g.tgtype & 20) <> 0
              AND g.tgname COLLATE "C" > '~recall_guard'
            ORDER BY g.tgname COLLATE "C" LIMIT 1;
            IF FOUND THEN
                RAISE WARNING 'trigger "%" on table "%" fires after "~recall_guard"', late,
                              (SELECT relname FROM pg_class WHERE oid = rel)
                    USING DETAIL = 'It could put recalled content back, so pg_recall refuses every write to the table while it exists.',
                          HINT = 'Rename the trigger so that its name sorts before "~recall_guard".';
            END IF;
        END IF;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER recall_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION recall._on_ddl_end();

-- DROP COLUMN of a registered column (with or without CASCADE).
CREATE OR REPLACE FUNCTION recall._on_column_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d record;
    r record;
BEGIN
    FOR d IN SELECT * FROM pg_event_trigger_dropped_objects() o
             WHERE o.classid = 'pg_catalog.pg_class'::regclass AND o.objsubid > 0
               AND o.object_type = 'table column' LOOP
        -- the table itself is not being dropped (then nothing is left to guard)
        CONTINUE WHEN EXISTS (SELECT FROM pg_event_trigger_dropped_objects() t
                              WHERE t.classid = 'pg_catalog.pg_class'::regclass
                                AND t.objid = d.objid AND t.objsubid = 0);
        FOR r IN SELECT * FROM recall._registered_columns(d.objid) c
                 WHERE c.col = d.address_names[3] LOOP
            RAISE EXCEPTION 'cannot drop column "%" of table "%" because pg_recall uses it',
                            r.col, d.address_names[2]
                USING ERRCODE = '2BP01',
                      DETAIL = format('Column "%s" is registered as %s of table %s.', r.col, r.what, r.tbl),
                      HINT = 'Disable recall (recall.disable or recall.drop_copy) first.';
        END LOOP;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER recall_column_drop ON sql_drop
    WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION recall._on_column_drop();

-- Enabled tables and copy tables: 1.1's trigger instead of 1.0's triggers
-- and CHECK (recall._drop_objects drops both generations).
DO $convert$
DECLARE
    t recall.tables;
    c regclass;
BEGIN
    FOR t IN SELECT * FROM recall.tables LOOP
        PERFORM recall._drop_objects(t.tbl);
        EXECUTE pg_catalog.format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW '
                                  'EXECUTE FUNCTION recall.guard_trigger()', '~recall_guard', t.tbl);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.tbl, '~recall_guard');
        -- 1.0 read a timestamp sent_at in the session's zone: fix today's
        IF t.sent_at IS NOT NULL AND (SELECT recall._base_type(a.atttypid)
                                       FROM pg_catalog.pg_attribute a
                                       WHERE a.attrelid = t.tbl AND a.attname = t.sent_at)
                                      = 'pg_catalog.timestamp'::pg_catalog.regtype THEN
            UPDATE recall.tables r SET sent_at_timezone = pg_catalog.current_setting('TimeZone')
            WHERE r.tbl = t.tbl;
        END IF;
    END LOOP;
    FOR c IN SELECT DISTINCT x.copy FROM recall.copies x LOOP
        PERFORM recall._copy_guards(c);
    END LOOP;
END
$convert$;

DROP FUNCTION recall.event_trigger();
DROP FUNCTION recall.notify_trigger();

-- Citus ----------------------------------------------------------------------
-- Recall on Citus distributed tables (src/citus.c).  Every function here is
-- a no-op, or returns at once, in a database without the citus extension.

-- Is tbl a Citus table (its rows on the workers)?
CREATE FUNCTION recall._citus_table(tbl regclass) RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_citus_table' LANGUAGE C STRICT STABLE;

-- The guard trigger's argument list: '' without Citus; with it, the
-- table's registry row as a JSON literal, which Citus copies to every shard
-- with the trigger.
CREATE FUNCTION recall._guard_args(tbl regclass) RETURNS text
    AS 'MODULE_PATHNAME', 'recall_guard_args' LANGUAGE C STRICT STABLE;

-- Copies are wiped by the node that recalls: not with Citus tables.
CREATE FUNCTION recall._citus_check_copy(tbl regclass, copy regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'recall_citus_check_copy' LANGUAGE C STRICT STABLE;

-- Citus refuses triggers on distributed tables unless
-- citus.enable_unsafe_triggers is on, and a distributed view's DDL after
-- parallel DDL in one transaction: the functions that create or drop
-- pg_recall's own triggers and the view run with both settings for their
-- own duration (placeholders, without effect, where Citus is not loaded).
ALTER FUNCTION recall.enable(regclass, name[], name, name, name, interval, text, text, text, text, text, text)
    SET citus.enable_unsafe_triggers = on SET citus.multi_shard_modify_mode = 'sequential';
ALTER FUNCTION recall.disable(regclass)
    SET citus.enable_unsafe_triggers = on SET citus.multi_shard_modify_mode = 'sequential';
ALTER FUNCTION recall.add_copy(regclass, regclass, name[], name[], text)
    SET citus.enable_unsafe_triggers = on SET citus.multi_shard_modify_mode = 'sequential';
ALTER FUNCTION recall.drop_copy(regclass, regclass, name[])
    SET citus.enable_unsafe_triggers = on SET citus.multi_shard_modify_mode = 'sequential';
ALTER FUNCTION recall._copy_guards(regclass) SET citus.enable_unsafe_triggers = on;

-- On the coordinator: how far each worker's (Citus group's) events have
-- been copied into this node's log, in that worker's (xid, seq) order.
CREATE TABLE recall.citus_positions (
    groupid     integer PRIMARY KEY,
    xid         xid8 NOT NULL,
    seq         bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
REVOKE ALL ON recall.citus_positions FROM PUBLIC;

-- On a worker: its events after the cursor its group has in positions
-- ({"<group>": "xid:seq"}), as events_after() reads them (transactions
-- below the snapshot's xmin, in (xid, seq) order), with the table's schema
-- and name: {"group": g, "events": [...]}.
CREATE FUNCTION recall._citus_node_events(positions jsonb, max_events integer)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g      integer;
    cur    text;
    after_xid  xid8 := '0';
    after_seq  bigint := 0;
    result text;
BEGIN
    EXECUTE 'SELECT groupid FROM pg_catalog.pg_dist_local_group' INTO g;
    cur := positions ->> g::text;
    IF cur IS NOT NULL THEN
        after_xid := split_part(cur, ':', 1)::xid8;
        after_seq := split_part(cur, ':', 2)::bigint;
    END IF;
    SELECT json_build_object('group', g,
                             'events', coalesce(json_agg(row_to_json(x) ORDER BY x.xid, x.seq), '[]'))::text
      INTO result
    FROM (SELECT e.xid, e.seq, n.nspname AS nsp, c.relname AS rel, e.pk, e.conversation,
                 e.actor, e.db_role, e.reason, e.privileged, e.recalled_at,
                 e.dispatch_group, e.key_hash
          FROM recall.events e
               LEFT JOIN pg_class c ON c.oid = e.tbl
               LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE e.xid < pg_snapshot_xmin(pg_current_snapshot())
            AND (e.xid, e.seq) > (after_xid, after_seq)
          ORDER BY e.xid, e.seq
          LIMIT max_events) x;
    RETURN result;
END
$$;
REVOKE ALL ON FUNCTION recall._citus_node_events(jsonb, integer) FROM PUBLIC;

-- On the coordinator: copy each worker's new events into this node's log
-- (with the coordinator's table, its own xid and seq, one dispatch group
-- per worker statement, no residue: the bytes are the worker's to erase),
-- an audit row for each privileged one, and move the worker's position, in
-- this transaction: each event is copied once.  One gatherer at a time.
CREATE FUNCTION recall._citus_gather(max_events integer DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    positions jsonb;
    r         record;
    batch     jsonb;
    g         integer;
    last      jsonb;
    groups    integer := 0;
    n         bigint;
    audited   bigint;
    total     bigint := 0;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')
       OR NOT pg_try_advisory_xact_lock(pg_catalog.hashtext('pg_recall citus gather')) THEN
        RETURN 0;
    END IF;
    SELECT coalesce(jsonb_object_agg(p.groupid::text, p.xid::text || ':' || p.seq::text), '{}')
      INTO positions FROM recall.citus_positions p;
    FOR r IN EXECUTE 'SELECT w.success, w.result FROM pg_catalog.run_command_on_workers($1) w'
             USING format('SELECT recall._citus_node_events(%L, %s)', positions, max_events)
    LOOP
        IF NOT r.success THEN
            RAISE WARNING 'pg_recall: could not read the recall events of a Citus worker: %', r.result;
            CONTINUE;
        END IF;
        batch := r.result::jsonb;
        g := (batch ->> 'group')::integer;
        last := batch -> 'events' -> -1;
        CONTINUE WHEN last IS NULL;

        WITH e AS (
            SELECT e.xid, e.seq, to_regclass(quote_ident(e.nsp) || '.' || quote_ident(e.rel)) AS tbl,
                   e.pk, e.conversation, e.actor, e.db_role, e.reason, e.privileged, e.recalled_at,
                   groups + dense_rank() OVER (ORDER BY e.xid, coalesce(e.dispatch_group, -1))::integer AS grp,
                   e.key_hash
            FROM jsonb_to_recordset(batch -> 'events')
                 AS e(xid xid8, seq bigint, nsp name, rel name, pk jsonb, conversation text,
                      actor text, db_role name, reason text, privileged boolean,
                      recalled_at timestamptz, dispatch_group integer, key_hash bigint)),
        ins AS (
            INSERT INTO recall.events (xid, tbl, pk, conversation, actor, db_role, reason,
                                       privileged, recalled_at, dispatch_group, key_hash, residue)
            SELECT pg_current_xact_id(), e.tbl, e.pk, e.conversation, e.actor, e.db_role, e.reason,
                   e.privileged, e.recalled_at, e.grp, e.key_hash, '{}'::oid[]
            FROM e WHERE e.tbl IS NOT NULL
            ORDER BY e.xid, e.seq
            RETURNING 1),
        aud AS (
            INSERT INTO recall.audit (at, xid, action, tbl, pk, actor, db_role, reason)
            SELECT e.recalled_at, pg_current_xact_id(), 'recall', e.tbl, e.pk, e.actor, e.db_role,
                   e.reason
            FROM e WHERE e.tbl IS NOT NULL AND e.privileged
            ORDER BY e.xid, e.seq
            RETURNING 1)
        SELECT (SELECT count(*) FROM ins), coalesce((SELECT max(e.grp) FROM e), groups),
               (SELECT count(*) FROM aud)
          INTO n, groups, audited;
        total := total + n;

        INSERT INTO recall.citus_positions AS p (groupid, xid, seq, updated_at)
        VALUES (g, (last ->> 'xid')::xid8, (last ->> 'seq')::bigint, now())
        ON CONFLICT (groupid) DO UPDATE
            SET xid = excluded.xid, seq = excluded.seq, updated_at = excluded.updated_at;
    END LOOP;
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION recall._citus_gather(integer) FROM PUBLIC;

CREATE FUNCTION recall.citus_gather() RETURNS bigint
    AS 'MODULE_PATHNAME', 'recall_citus_gather' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION recall.citus_gather() IS
    'on a Citus coordinator: copy the workers'' new recall events into this node''s log now; the count';
REVOKE ALL ON FUNCTION recall.citus_gather() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recall.citus_gather() TO recall_admin;
