-- terms.csv: every academicSession of MAPPING_TERM_TYPES.
SELECT
    session_id AS term_id,
    coalesce(rb_text(rb_term_name(title, school_year, type, session_id)), session_id) AS name,
    CASE WHEN deleted THEN 'deleted' ELSE 'active' END AS status,
    rb_start(start_date) AS start_date,
    rb_end(end_date) AS end_date
FROM rb_session
WHERE is_term
ORDER BY ALL
