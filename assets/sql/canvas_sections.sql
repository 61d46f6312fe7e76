-- sections.csv of one term: one section per class.
SELECT
    section_id,
    course_id,
    name,
    CASE WHEN deleted THEN 'deleted' ELSE 'active' END AS status
FROM rb_canvas_section
ORDER BY ALL
