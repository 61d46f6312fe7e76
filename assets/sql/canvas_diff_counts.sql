-- Totals of one classified CSV (see canvas_diff_changes.sql).
SELECT count(*) FILTER (WHERE in_current) AS rows,
       count(*) FILTER (WHERE change = 'created') AS created,
       count(*) FILTER (WHERE change = 'changed') AS changed,
       count(*) FILTER (WHERE change = 'deleted') AS deleted,
       count(*) FILTER (WHERE change = 'unchanged') AS unchanged,
       count(*) FILTER (WHERE previously_live) AS previously_live
FROM changes
