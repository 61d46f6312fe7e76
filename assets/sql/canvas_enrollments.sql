-- enrollments.csv of one term. Duplicate OneRoster enrollments of one user, section and role become
-- one row (Canvas identifies an enrollment by them), active if any of them is. A section belongs to
-- one course, so (section_id, user_id, role) is the whole sort key. De-duplicating and sorting on
-- section_rank (ordered as section_id) and looking the ids up afterwards moves less data.
SELECT
    s.course_id,
    s.section_id,
    e.user_id,
    e.role,
    CASE WHEN e.deleted THEN 'deleted' ELSE 'active' END AS status
FROM (
    SELECT section_rank, user_id, role, bool_and(deleted) AS deleted
    FROM rb_term_enrollment
    WHERE role IS NOT NULL AND user_known
    GROUP BY section_rank, user_id, role
) e
JOIN (
    SELECT section_rank, any_value(section_id) AS section_id, any_value(course_id) AS course_id
    FROM rb_canvas_section
    GROUP BY section_rank
) s USING (section_rank)
ORDER BY e.section_rank, e.user_id, e.role
