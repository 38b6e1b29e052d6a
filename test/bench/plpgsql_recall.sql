-- (b) of the dispatcher benchmark: recall written by hand in PL/pgSQL, as
-- an application team would without pg_recall: a BEFORE trigger that wipes
-- and freezes, an AFTER trigger that logs an event row and calls pg_notify
-- inside the transaction.  Runs against table "handmade" (same shape as
-- the benchmark's messages table).

CREATE TABLE handmade_events (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid          xid8 NOT NULL,
    tbl          regclass NOT NULL,
    pk           jsonb NOT NULL,
    conversation text,
    actor        text NOT NULL,
    recalled_at  timestamptz NOT NULL
);

CREATE FUNCTION handmade_wipe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.recalled_at IS NOT NULL THEN
        IF NEW.recalled_at IS NULL OR NEW.body IS NOT NULL OR NEW.attachment IS NOT NULL THEN
            RAISE EXCEPTION 'recalled message is frozen' USING ERRCODE = '55000';
        END IF;
        NEW.recalled_at := OLD.recalled_at;
        NEW.recalled_by := OLD.recalled_by;
        RETURN NEW;
    END IF;
    IF NEW.recalled_at IS NOT NULL THEN
        NEW.recalled_by := coalesce(NEW.recalled_by, current_setting('recall.actor', true), session_user);
        IF NEW.recalled_by IS DISTINCT FROM OLD.sender THEN
            RAISE EXCEPTION 'not the sender' USING ERRCODE = '42501';
        END IF;
        NEW.recalled_at := now();
        NEW.body := NULL;
        NEW.attachment := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE FUNCTION handmade_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    INSERT INTO handmade_events (xid, tbl, pk, conversation, actor, recalled_at)
    VALUES (pg_current_xact_id(), TG_RELID, jsonb_build_object('id', NEW.id),
            NEW.conversation::text, NEW.recalled_by, NEW.recalled_at)
    RETURNING seq INTO s;
    PERFORM pg_notify('handmade', json_build_object('v', 1, 'op', 'recall',
                      'table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
                      'pk', jsonb_build_object('id', NEW.id),
                      'conversation', NEW.conversation::text, 'seq', s,
                      'at', NEW.recalled_at)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER handmade_wipe BEFORE UPDATE ON handmade FOR EACH ROW
    WHEN (OLD.recalled_at IS NOT NULL OR NEW.recalled_at IS NOT NULL)
    EXECUTE FUNCTION handmade_wipe();
CREATE TRIGGER handmade_event AFTER UPDATE ON handmade FOR EACH ROW
    WHEN (OLD.recalled_at IS NULL AND NEW.recalled_at IS NOT NULL)
    EXECUTE FUNCTION handmade_event();
