/* pg_recall--1.1.sql: objects of the recall schema (fresh install of 1.1) */

\echo Use "CREATE EXTENSION pg_recall" to load this file. \quit

-- Roles are cluster-wide: create them only when missing, never drop them.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'recall_admin') THEN
        CREATE ROLE recall_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'recall_auditor') THEN
        CREATE ROLE recall_auditor NOLOGIN;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA recall TO PUBLIC;

-- Registry: one row per enabled table, written only through recall.enable().
CREATE TABLE recall.tables (
    tbl                 regclass PRIMARY KEY,
    key_columns         name[] NOT NULL,
    content             name[] NOT NULL,
    wiped_values        text[] NOT NULL,    -- per content column; NULL element: SQL NULL
    sender              name,
    sent_at             name,
    sent_at_unit        text CHECK (sent_at_unit IN ('s', 'ms')),
    conversation        name,
    recall_window       interval,
    channel             text NOT NULL DEFAULT 'recall',
    on_recalled_write   text NOT NULL DEFAULT 'error'
                        CHECK (on_recalled_write IN ('error', 'keep_wiped')),
    actor_source        text NOT NULL DEFAULT 'statement'
                        CHECK (actor_source IN ('statement', 'role', 'setting')),
    actor_setting       text,
    actor_claim         text,
    view_name           name NOT NULL,
    enabled_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- the time zone a timestamp (without time zone) sent_at is read in: the
    -- one in effect when enable() ran, so that no session can move a window
    sent_at_timezone    text,
    CHECK (pg_catalog.cardinality(content) >= 1
           AND pg_catalog.cardinality(content) = pg_catalog.cardinality(wiped_values))
);
COMMENT ON TABLE recall.tables IS 'tables enabled for recall and their settings';
SELECT pg_catalog.pg_extension_config_dump('recall.tables', '');
GRANT SELECT ON recall.tables TO PUBLIC;

-- Durable, append-only recall log.  Never holds content.  Written by C
-- (heap insert plus every index, expression and partial ones included).
CREATE TABLE recall.events (
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    xid          xid8 NOT NULL,
    tbl          regclass NOT NULL,
    pk           jsonb NOT NULL,
    conversation text,
    actor        text NOT NULL,
    db_role      name NOT NULL,
    reason       text,
    privileged   boolean NOT NULL,
    recalled_at  timestamptz NOT NULL,
    -- for the background dispatcher: events of one statement share a group;
    -- NULL when the recall transaction sent the notification itself
    dispatch_group integer,
    -- jsonb_hash_extended(pk, 0) when tbl has registered copies: a copy
    -- guard finds the recall of a deleted message through it
    key_hash     bigint,
    -- where the recalled version's bytes are, for the purge: pairs of
    -- {relation, block} (the old heap version, its TOAST chunks)
    residue      oid[]
);
-- events_after(), the dispatcher and the purger read in (xid, seq) order
CREATE INDEX events_xid_seq_idx ON recall.events (xid, seq);
-- copy guards ask whether a deleted message was recalled (tables with copies only)
CREATE INDEX events_key_idx ON recall.events (tbl, key_hash) WHERE key_hash IS NOT NULL;
COMMENT ON TABLE recall.events IS 'one row per recalled message; never holds content';
REVOKE ALL ON recall.events FROM PUBLIC;

-- How far the background dispatcher has notified, as an events_after cursor.
CREATE TABLE recall.dispatch_state (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    xid       xid8 NOT NULL,
    seq       bigint NOT NULL,
    done      text[] NOT NULL DEFAULT '{}',  -- events sent above the position
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
INSERT INTO recall.dispatch_state (xid, seq)
    SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()), 0;
REVOKE ALL ON recall.dispatch_state FROM PUBLIC;

-- Copies of messages' text in other rows, wiped or deleted with them.
CREATE TABLE recall.copies (
    tbl           regclass NOT NULL,
    copy          regclass NOT NULL,
    match         name[] NOT NULL,
    content       name[],
    wiped_values  text[],
    action        text NOT NULL CHECK (action IN ('wipe', 'delete')),
    PRIMARY KEY (tbl, copy, match),
    CHECK ((action = 'wipe') = (content IS NOT NULL))
);
CREATE INDEX copies_copy_idx ON recall.copies (copy);
COMMENT ON TABLE recall.copies IS 'copies of enabled tables'' messages (quotes, previews, side tables, versions)';
SELECT pg_catalog.pg_extension_config_dump('recall.copies', '');
GRANT SELECT ON recall.copies TO PUBLIC;

-- Erasure state (the purger's).  How far each table's recalled versions
-- have been erased: every event up to (xid, seq) in (xid, seq) order.
CREATE TABLE recall.purge_state (
    tbl        regclass PRIMARY KEY,
    xid        xid8 NOT NULL,
    seq        bigint NOT NULL DEFAULT 0,
    purged_at  timestamptz
);
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

-- Privileged actions.  Never holds content.
CREATE TABLE recall.audit (
    at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    xid      xid8 NOT NULL,
    action   text NOT NULL,
    tbl      regclass NOT NULL,
    pk       jsonb NOT NULL,
    actor    text NOT NULL,
    db_role  name NOT NULL,
    reason   text NOT NULL
);
CREATE INDEX audit_at_idx ON recall.audit (at);
COMMENT ON TABLE recall.audit IS 'recalls made with admin power; readable by recall_auditor';
REVOKE ALL ON recall.audit FROM PUBLIC;
GRANT SELECT ON recall.audit TO recall_auditor;
-- An audit trail must survive a dump and restore.
SELECT pg_catalog.pg_extension_config_dump('recall.audit', '');

-- C functions ---------------------------------------------------------------

CREATE FUNCTION recall.guard_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'recall_guard_trigger' LANGUAGE C;
COMMENT ON FUNCTION recall.guard_trigger() IS
    'BEFORE UPDATE row trigger: stamps, wipes, checks permission, freezes recalled rows';

CREATE FUNCTION recall.event_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'recall_event_trigger' LANGUAGE C;
COMMENT ON FUNCTION recall.event_trigger() IS
    'AFTER UPDATE row trigger: appends the recall to recall.events and recall.audit';

CREATE FUNCTION recall.notify_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'recall_notify_trigger' LANGUAGE C;
COMMENT ON FUNCTION recall.notify_trigger() IS
    'AFTER UPDATE statement trigger: one notification per statement that recalled';

CREATE FUNCTION recall.recall(tbl regclass, id anyelement,
                              actor text DEFAULT NULL, reason text DEFAULT NULL)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_recall' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall.recall(regclass, anyelement, text, text) IS
    'recall one message by key: true if recalled now, false if already recalled';

CREATE FUNCTION recall._wiped_value(tbl regclass, col name) RETURNS text
    AS 'MODULE_PATHNAME', 'recall_wiped_value' LANGUAGE C STRICT STABLE;

CREATE FUNCTION recall._registry_put(entry recall.tables) RETURNS void
    AS 'MODULE_PATHNAME', 'recall_registry_put' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recall._registry_delete(tbl regclass) RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_registry_delete' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recall._copies_put(entry recall.copies) RETURNS void
    AS 'MODULE_PATHNAME', 'recall_copies_put' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recall._copies_delete(entry recall.copies) RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_copies_delete' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recall._treat_existing_copies(tbl regclass, copy regclass, match name[])
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'recall_treat_existing_copies' LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION recall.copy_guard_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'recall_copy_guard_trigger' LANGUAGE C;
COMMENT ON FUNCTION recall.copy_guard_trigger() IS
    'row trigger on a copy table: a row pointing at a recalled message is wiped or not kept';
-- Both check that the caller owns the table, then write as the extension's
-- owner: callers need no privilege on the registry itself.

-- Reading the event log -----------------------------------------------------

CREATE FUNCTION recall.events_after(after text DEFAULT NULL, max_events integer DEFAULT 1000)
    RETURNS TABLE (cursor text, seq bigint, tbl regclass, pk jsonb,
                   conversation text, actor text, privileged boolean,
                   recalled_at timestamptz)
    AS 'MODULE_PATHNAME', 'recall_events_after' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall.events_after(text, integer) IS
    'committed recall events after a cursor, gap-free, in (xid, seq) order';

CREATE FUNCTION recall.head() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::pg_catalog.text
           OPERATOR(pg_catalog.||) ':0'
$$;
COMMENT ON FUNCTION recall.head() IS
    'a cursor at now: events_after(head()) returns only events not yet visible';

CREATE FUNCTION recall.prune_events(older_than interval) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF older_than IS NULL OR older_than < '0'::interval THEN
        RAISE EXCEPTION 'older_than must be a non-negative interval'
            USING ERRCODE = '22023';
    END IF;
    -- never an event the dispatcher has still to notify
    DELETE FROM recall.events e
    WHERE e.recalled_at < pg_catalog.now() - older_than
      AND e.xid < pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())
      AND (e.dispatch_group IS NULL
           OR (e.xid, e.seq) <= (SELECT (d.xid, d.seq) FROM recall.dispatch_state d));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION recall.prune_events(interval) IS
    'delete events recalled longer ago than older_than; returns the count';
REVOKE ALL ON FUNCTION recall.prune_events(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recall.prune_events(interval) TO recall_admin;

-- recall.enable -------------------------------------------------------------
-- Runs with the caller's rights: every change to the user's table is DDL its
-- owner could run by hand.  Not pinned to a search_path, since the backfill
-- UPDATE fires the table's own triggers, which must see the caller's path;
-- every name of ours is schema-qualified instead.

CREATE FUNCTION recall._base_type(typ oid) RETURNS oid
LANGUAGE sql STABLE STRICT AS $$
    WITH RECURSIVE d(t, base, depth) AS (
        SELECT t.oid, t.typbasetype, 0 FROM pg_catalog.pg_type t WHERE t.oid = typ
        UNION ALL
        SELECT t.oid, t.typbasetype, d.depth + 1
        FROM d JOIN pg_catalog.pg_type t ON t.oid = d.base
        WHERE d.base <> 0 AND d.depth < 32)
    SELECT t FROM d WHERE base = 0
$$;

-- A table's plain name, for messages.
CREATE FUNCTION recall._relname(tbl regclass) RETURNS name
LANGUAGE sql STABLE STRICT AS $$
    SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = tbl
$$;

CREATE FUNCTION recall._check_owner(tbl regclass, what text) RETURNS pg_catalog.pg_class
LANGUAGE plpgsql STABLE AS $$
DECLARE
    rel pg_catalog.pg_class;
BEGIN
    SELECT * INTO rel FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation with OID % does not exist', tbl::oid
            USING ERRCODE = '42P01';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '"%" is not a table', rel.relname
            USING ERRCODE = '42809',
                  DETAIL = 'Only ordinary and partitioned tables can hold recallable messages.';
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', rel.relname
            USING ERRCODE = '42501',
                  DETAIL = format('Only the table''s owner or a superuser may %s it.', what);
    END IF;
    RETURN rel;
END
$$;

-- The view's name: <table>_visible, shortened to fit NAMEDATALEN.
CREATE FUNCTION recall._view_name(relname name) RETURNS name
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

-- Drop the triggers and constraint recall.enable() puts on a table.
CREATE FUNCTION recall._drop_objects(tbl regclass) RETURNS void
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

CREATE FUNCTION recall.enable(tbl regclass, content name[],
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
    conds        text[] := '{}';
    check_expr   text;
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
BEGIN
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'table must not be null' USING ERRCODE = '22004';
    END IF;
    rel := recall._check_owner(tbl, 'enable recall on');
    SELECT n.nspname INTO nsp FROM pg_catalog.pg_namespace n WHERE n.oid = rel.relnamespace;

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

    -- Everything is checked; now change things.
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

    -- The CHECK: each content column of a recalled row holds its wiped value.
    FOR i IN 1 .. pg_catalog.cardinality(content) LOOP
        IF wiped[i] IS NULL THEN
            conds := conds || format('%I IS NULL', content[i]);
        ELSE
            SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid INTO att
            FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = content[i];
            typ := recall._base_type(att.atttypid);
            IF EXISTS (SELECT FROM pg_catalog.pg_operator o
                       WHERE o.oprname = '=' AND o.oprleft = typ AND o.oprright = typ)
               OR EXISTS (SELECT FROM pg_catalog.pg_type t
                          WHERE t.oid = typ AND t.typcategory IN ('S', 'A'))
            THEN
                conds := conds || format('%I = %L::%s', content[i], wiped[i], att.format_type);
            ELSE
                -- json and other types without an equality operator
                conds := conds || format('%I::text = %L', content[i], wiped[i]);
            END IF;
        END IF;
    END LOOP;
    check_expr := pg_catalog.array_to_string(conds, ' AND ');

    -- Rows recalled before (an earlier enable, or data loaded with the
    -- columns) get every content column wiped, new ones included.
    EXECUTE format('UPDATE %s SET %s WHERE recalled_at IS NOT NULL AND NOT (%s)',
                   tbl,
                   (SELECT pg_catalog.string_agg(
                               format('%I = %s', c,
                                      CASE WHEN w IS NULL THEN 'NULL' ELSE pg_catalog.quote_literal(w) END),
                               ', ')
                    FROM ROWS FROM (pg_catalog.unnest(content), pg_catalog.unnest(wiped)) AS u(c, w)),
                   check_expr);

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
    PERFORM recall._registry_put(entry);

    -- Named to sort after every ordinary trigger name: BEFORE triggers fire
    -- in name order, so the wipe comes last.
    EXECUTE format('CREATE TRIGGER "~recall_guard" BEFORE UPDATE ON %s FOR EACH ROW '
                   'WHEN (OLD.recalled_at IS NOT NULL OR NEW.recalled_at IS NOT NULL) '
                   'EXECUTE FUNCTION recall.guard_trigger()', tbl);
    EXECUTE format('CREATE TRIGGER "~recall_event" AFTER UPDATE ON %s FOR EACH ROW '
                   'WHEN (OLD.recalled_at IS NULL AND NEW.recalled_at IS NOT NULL) '
                   'EXECUTE FUNCTION recall.event_trigger()', tbl);
    EXECUTE format('CREATE TRIGGER "~recall_notify" AFTER UPDATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION recall.notify_trigger()', tbl);
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT recall_wiped CHECK (recalled_at IS NULL OR (%s))',
                   tbl, check_expr);

    -- Content statistics would keep most common values in pg_statistic.
    FOREACH col IN ARRAY content LOOP
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
      AND t.tgname NOT IN ('~recall_guard', '~recall_event', '~recall_notify');
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
COMMENT ON FUNCTION recall.enable(regclass, name[], name, name, name, interval, text, text, text, text, text, text) IS
    'enable recall on a messages table; returns its <table>_visible view';

CREATE FUNCTION recall.disable(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $disable$
DECLARE
    rel  pg_catalog.pg_class;
    cfg  recall.tables;
    c    recall.copies;
BEGIN
    rel := recall._check_owner(tbl, 'disable recall on');
    SELECT * INTO cfg FROM recall.tables t WHERE t.tbl = disable.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not enabled for recall', rel.relname
            USING ERRCODE = '55000', HINT = 'Call recall.enable() on the table first.';
    END IF;
    PERFORM recall._drop_objects(tbl);
    EXECUTE format('DROP VIEW IF EXISTS %I.%I',
                   (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = rel.relnamespace),
                   cfg.view_name);
    FOR c IN SELECT * FROM recall.copies x WHERE x.tbl = disable.tbl LOOP
        PERFORM recall._copies_delete(c);
        PERFORM recall._copy_guards(c.copy);
    END LOOP;
    PERFORM recall._registry_delete(tbl);
END
$disable$;
COMMENT ON FUNCTION recall.disable(regclass) IS
    'remove recall triggers, constraint, view and registry entry; keep columns and data';

-- recall.recall_sender: an admin's bulk recall of one author's messages ------

CREATE FUNCTION recall.recall_sender(tbl regclass, sender text, reason text,
                                     since timestamptz DEFAULT NULL,
                                     until timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $rs$
DECLARE
    cfg   recall.tables;
    cond  text;
    styp  oid;
    mult  text;
    n     bigint;
BEGIN
    SELECT * INTO cfg FROM recall.tables t WHERE t.tbl = recall_sender.tbl;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table "%" is not enabled for recall', recall._relname(tbl)
            USING ERRCODE = '55000', HINT = 'Call recall.enable() on the table first.';
    END IF;
    IF cfg.sender IS NULL THEN
        RAISE EXCEPTION 'table "%" has no sender column', recall._relname(tbl)
            USING ERRCODE = '55000', HINT = 'Pass sender => ... to recall.enable().';
    END IF;
    IF recall_sender.sender IS NULL THEN
        RAISE EXCEPTION 'sender must not be null' USING ERRCODE = '22004';
    END IF;
    IF (since IS NOT NULL OR until IS NOT NULL) AND cfg.sent_at IS NULL THEN
        RAISE EXCEPTION 'table "%" has no sent_at column to bound the recall in time', recall._relname(tbl)
            USING ERRCODE = '22023';
    END IF;

    SELECT recall._base_type(a.atttypid) INTO styp
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = cfg.sender;
    IF styp IN ('pg_catalog.text'::regtype, 'pg_catalog.varchar'::regtype) THEN
        cond := format('%I = $1', cfg.sender);
    ELSE
        cond := format('%I::text = $1', cfg.sender);
    END IF;
    IF cfg.sent_at_unit IS NULL THEN
        IF since IS NOT NULL THEN cond := cond || format(' AND %I >= $2', cfg.sent_at); END IF;
        IF until IS NOT NULL THEN cond := cond || format(' AND %I < $3', cfg.sent_at); END IF;
    ELSE
        mult := CASE cfg.sent_at_unit WHEN 'ms' THEN '1000' ELSE '1' END;
        IF since IS NOT NULL THEN
            cond := cond || format(' AND %I >= pg_catalog.ceil(pg_catalog.date_part(''epoch'', $2) * %s)', cfg.sent_at, mult);
        END IF;
        IF until IS NOT NULL THEN
            cond := cond || format(' AND %I < pg_catalog.ceil(pg_catalog.date_part(''epoch'', $3) * %s)', cfg.sent_at, mult);
        END IF;
    END IF;

    EXECUTE format('UPDATE %s SET recalled_at = pg_catalog.now(), recall_reason = $4 '
                   'WHERE %s AND recalled_at IS NULL', tbl, cond)
        USING recall_sender.sender, since, until, reason;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$rs$;
COMMENT ON FUNCTION recall.recall_sender(regclass, text, text, timestamptz, timestamptz) IS
    'recall every message of one sender (optionally in [since, until)); returns the count';

-- Copies ------------------------------------------------------------------

-- (Re)create the guard triggers of a copy table from its registrations.
CREATE FUNCTION recall._copy_guards(copy regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cond_all  text;
    cond_del  text;
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = copy AND g.tgname = '~recall_copy_guard' AND g.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER "~recall_copy_guard" ON %s', copy);
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_trigger g
               WHERE g.tgrelid = copy AND g.tgname = '~recall_copy_delete' AND g.tgparentid = 0) THEN
        EXECUTE format('DROP TRIGGER "~recall_copy_delete" ON %s', copy);
    END IF;

    -- fire only for rows that point at a message at all
    SELECT pg_catalog.string_agg(DISTINCT '(' || (SELECT pg_catalog.string_agg(format('NEW.%I IS NOT NULL', m), ' AND ')
                                              FROM pg_catalog.unnest(x.match) AS u(m)) || ')', ' OR '),
           pg_catalog.string_agg(DISTINCT '(' || (SELECT pg_catalog.string_agg(format('NEW.%I IS NOT NULL', m), ' AND ')
                                              FROM pg_catalog.unnest(x.match) AS u(m)) || ')', ' OR ')
               FILTER (WHERE x.action = 'delete')
      INTO cond_all, cond_del
    FROM recall.copies x WHERE x.copy = _copy_guards.copy;

    IF cond_all IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER "~recall_copy_guard" BEFORE INSERT OR UPDATE ON %s '
                       'FOR EACH ROW WHEN (%s) EXECUTE FUNCTION recall.copy_guard_trigger()',
                       copy, cond_all);
    END IF;
    IF cond_del IS NOT NULL THEN
        EXECUTE format('CREATE TRIGGER "~recall_copy_delete" AFTER UPDATE ON %s '
                       'FOR EACH ROW WHEN (%s) EXECUTE FUNCTION recall.copy_guard_trigger()',
                       copy, cond_del);
    END IF;
END
$$;

CREATE FUNCTION recall.add_copy(tbl regclass, copy regclass, match name[],
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
BEGIN
    IF tbl IS NULL OR copy IS NULL THEN
        RAISE EXCEPTION 'table and copy must not be null' USING ERRCODE = '22004';
    END IF;
    PERFORM recall._check_owner(tbl, 'register copies of');
    crel := recall._check_owner(copy, 'register copies in');
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
    PERFORM recall._copy_guards(copy);

    -- copies of messages recalled already (or recalled and deleted) at once
    PERFORM recall._treat_existing_copies(tbl, copy, match);
END
$add_copy$;
COMMENT ON FUNCTION recall.add_copy(regclass, regclass, name[], name[], text) IS
    'register a table holding copies of tbl''s messages, wiped or deleted on recall';

CREATE FUNCTION recall.drop_copy(tbl regclass, copy regclass, match name[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    entry recall.copies;
BEGIN
    PERFORM recall._check_owner(tbl, 'unregister copies of');
    PERFORM recall._check_owner(copy, 'unregister copies in');
    entry.tbl := tbl;
    entry.copy := copy;
    entry.match := match;
    entry.action := 'delete';
    IF NOT recall._copies_delete(entry) THEN
        RAISE EXCEPTION 'copy of table "%" in "%" matched by (%) is not registered', recall._relname(tbl), recall._relname(copy),
                        pg_catalog.array_to_string(match, ', ')
            USING ERRCODE = '42704';
    END IF;
    PERFORM recall._copy_guards(copy);
END
$$;
COMMENT ON FUNCTION recall.drop_copy(regclass, regclass, name[]) IS
    'unregister a copy table and drop its guard triggers when it has no other registration';

-- Erasure -------------------------------------------------------------------
-- (erasure helper's block: recall.purge(), recall.purge_status and their
-- helpers; the state tables are above)

CREATE FUNCTION recall.purge(tbl regclass DEFAULT NULL)
    RETURNS TABLE (relation regclass, kind text, pages_scanned bigint,
                   pages_scrubbed bigint, bytes_zeroed bigint, rebuilt boolean)
    AS 'MODULE_PATHNAME', 'recall_purge' LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION recall.purge(regclass) IS
    'erase now the heap and TOAST pages recalls left their old bytes on (NULL: every table you own); content indexes are left to the rebuilder';

-- The three clocks as intervals (NULL: off), for recall.purge_status.
CREATE FUNCTION recall._erasure_settings(OUT purge_delay interval,
                                         OUT index_rebuild_interval interval,
                                         OUT sweep_interval interval)
    AS 'MODULE_PATHNAME', 'recall_erasure_settings' LANGUAGE C STABLE;
REVOKE ALL ON FUNCTION recall._erasure_settings() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION recall._erasure_settings() TO recall_admin;

-- What erasure has pending, per enabled table (index NULL) and per content
-- index (the indexes a purge has marked at least once).
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
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid;
COMMENT ON VIEW recall.purge_status IS
    'erasure per enabled table (index NULL) and per content index: recalls not yet purged, last purge, index rebuilds, sweeps';
REVOKE ALL ON recall.purge_status FROM PUBLIC;
GRANT SELECT ON recall.purge_status TO recall_admin;
-- (end of the erasure helper's block)

CREATE FUNCTION recall._clear_statistics(tbl regclass, col name) RETURNS void
    AS 'MODULE_PATHNAME', 'recall_clear_statistics' LANGUAGE C STRICT VOLATILE;

-- With pg_recall preloaded, start this database's dispatcher at commit.
CREATE FUNCTION recall._wake_dispatcher() RETURNS boolean
    AS 'MODULE_PATHNAME', 'recall_wake_dispatcher' LANGUAGE C VOLATILE;
SELECT recall._wake_dispatcher();

-- Keep the registry in step with DROP TABLE.
CREATE FUNCTION recall._on_sql_drop() RETURNS event_trigger
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
CREATE EVENT TRIGGER recall_sql_drop ON sql_drop
    EXECUTE FUNCTION recall._on_sql_drop();
