-- baseline: a bare UPDATE that does what a recall does to the row, without
-- the extension (plain table).  Every transaction takes a fresh id.
UPDATE messages
SET recalled_at = now(), recalled_by = 'bench', body = NULL, attachment = NULL
WHERE id = (SELECT nextval('bench_ids'));
