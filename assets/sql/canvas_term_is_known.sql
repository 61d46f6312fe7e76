-- Whether getvariable('term_id') is a term of the snapshot (1) or not (0).
SELECT count(*) FROM rb_session WHERE session_id = getvariable('term_id') AND is_term
