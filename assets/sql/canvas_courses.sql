-- courses.csv of one term (getvariable('term_id')).
SELECT
    course_id,
    short_name,
    long_name,
    account_id,
    term_id,
    CASE WHEN deleted THEN 'deleted' ELSE getvariable('new_course_status') END AS status
FROM rb_canvas_course
ORDER BY ALL
