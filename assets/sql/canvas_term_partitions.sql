-- school_term partitions: the Canvas terms that at least one class lives in.
SELECT
    t.session_id,
    t.title,
    t.type,
    t.start_date,
    t.end_date,
    t.deleted,
    count(*) AS classes
FROM or_classes c
JOIN rb_class_term ct ON ct.class_id = c.sourcedId
JOIN rb_session t ON t.session_id = ct.term_id
GROUP BY ALL
ORDER BY t.start_date NULLS LAST, t.session_id
