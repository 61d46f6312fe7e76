-- school_term partitions: the Canvas terms that at least one class lives in.
SELECT
    t.session_id,
    t.title,
    t.type,
    t.start_date,
    t.end_date,
    t.deleted,
    count(*) AS classes
FROM rb_class c
JOIN rb_session t ON t.session_id = c.term_id
GROUP BY ALL
ORDER BY t.start_date NULLS LAST, t.session_id
