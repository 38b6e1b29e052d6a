-- test/t/residue.sql: what a recall leaves behind, recorded by hand where
-- the recall itself did not (events written before the trigger recorded
-- residue).  Used by the erasure TAP tests (ForensicScan.pm,
-- recall_with_residue) and test/bench/erasure_bench.sh.  Needs pg_recall;
-- creates pageinspect.  Usage, in the recall's transaction:
--   CREATE TEMP TABLE _residue ON COMMIT DROP AS
--       SELECT * FROM public.test_pre_residue('tbl', ARRAY[keys]);
--   <the recall>;
--   SELECT public.test_post_residue('tbl');
CREATE EXTENSION IF NOT EXISTS pageinspect;
-- {leaf, block} of a row version and {toast relation, block} of each chunk
-- of the named columns stored out of line
CREATE OR REPLACE FUNCTION public.test_residue(leaf regclass, t tid, cols name[])
RETURNS oid[] LANGUAGE plpgsql AS $f$
DECLARE
    blk   int := (t::text::point)[0]::int;
    off   int := (t::text::point)[1]::int;
    res   oid[] := ARRAY[leaf::oid, blk::oid];
    toast regclass;
    att   int;
    raw   bytea;
    vid   bigint;
    b     int;
BEGIN
    SELECT c.reltoastrelid::regclass INTO toast FROM pg_class c
    WHERE c.oid = leaf AND c.reltoastrelid <> 0;
    IF toast IS NULL THEN
        RETURN res;
    END IF;
    FOR att IN SELECT a.attnum FROM pg_attribute a
               WHERE a.attrelid = leaf AND a.attname = ANY (cols) LOOP
        SELECT i.t_attrs[att] INTO raw
        FROM heap_page_item_attrs(get_raw_page(leaf::text, blk), leaf) i WHERE i.lp = off;
        -- an on-disk TOAST pointer: 0x01, tag, rawsize, extinfo, valueid
        IF raw IS NOT NULL AND length(raw) >= 18 AND get_byte(raw, 0) = 1 THEN
            vid := get_byte(raw, 10) + get_byte(raw, 11) * 256
                   + get_byte(raw, 12) * 65536 + get_byte(raw, 13)::bigint * 16777216;
            FOR b IN EXECUTE format(
                'SELECT DISTINCT (ctid::text::point)[0]::int FROM %s WHERE chunk_id = $1', toast)
                USING vid::oid LOOP
                res := res || ARRAY[toast::oid, b::oid];
            END LOOP;
        END IF;
    END LOOP;
    RETURN res;
END
$f$;
-- Before a recall of the given keys of tbl: the residue of each row and of
-- each copy row (single-column keys and matches)
CREATE OR REPLACE FUNCTION public.test_pre_residue(tbl regclass, keys bigint[])
RETURNS TABLE (kind text, key text, residue oid[]) LANGUAGE plpgsql AS $f$
DECLARE
    t recall.tables;
    c recall.copies;
    cols name[];
BEGIN
    SELECT * INTO t FROM recall.tables x WHERE x.tbl = test_pre_residue.tbl;
    RETURN QUERY EXECUTE format(
        'SELECT %L::text, %I::text, public.test_residue(tableoid, ctid, %L) FROM %s WHERE %I = ANY ($1)',
        'event', t.key_columns[1], t.content, tbl, t.key_columns[1]) USING keys;
    FOR c IN SELECT * FROM recall.copies x WHERE x.tbl = test_pre_residue.tbl LOOP
        cols := coalesce(c.content, (SELECT array_agg(a.attname) FROM pg_attribute a
                                     WHERE a.attrelid = c.copy AND a.attnum > 0));
        RETURN QUERY EXECUTE format(
            'SELECT %L::text, %I::text, public.test_residue(tableoid, ctid, %L) FROM %s WHERE %I = ANY ($1)',
            'copy', c.match[1], cols, c.copy, c.match[1]) USING keys;
    END LOOP;
END
$f$;
-- After the recall, in its transaction: the residue into the events (and
-- the queue) where the recall did not record it
CREATE OR REPLACE FUNCTION public.test_post_residue(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
    keycol name;
BEGIN
    SELECT x.key_columns[1] INTO keycol FROM recall.tables x WHERE x.tbl = test_post_residue.tbl;
    UPDATE recall.events e SET residue = r.residue FROM _residue r
    WHERE r.kind = 'event' AND e.xid = pg_current_xact_id() AND e.residue IS NULL
      AND e.tbl = test_post_residue.tbl AND e.pk ->> keycol = r.key;
    IF NOT EXISTS (SELECT FROM recall.purge_queue q WHERE q.xid = pg_current_xact_id()) THEN
        INSERT INTO recall.purge_queue (xid, relid, blocks)
        SELECT pg_current_xact_id(), p.rel, array_agg(DISTINCT p.blk)
        FROM _residue r, LATERAL (SELECT r.residue[i] AS rel, r.residue[i + 1] AS blk
                                  FROM generate_series(1, cardinality(r.residue), 2) i) p
        WHERE r.kind = 'copy'
        GROUP BY p.rel;
    END IF;
END
$f$;
