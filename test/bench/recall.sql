-- a recall by plain UPDATE on the enabled table: pg_recall stamps, wipes,
-- checks permission (self-recall: the bench role sent every message),
-- writes the event row and notifies.  Every transaction takes a fresh id.
UPDATE messages
SET recalled_at = now()
WHERE id = (SELECT nextval('bench_ids'));
