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
    UNION ALL
    -- Sent as deleted before, no longer sent by the SIS: still deleted. Canvas's diff would otherwise
    -- give the missing row MAPPING_ENROLLMENT_DROP_STATUS (inactive), and a dropped student would
    -- come back to the course roster. Only while its section and user are still in the data set.
    SELECT s.section_rank, i.user_id, i.role, true
    FROM rb_imported_deleted_enrollment i
    JOIN rb_canvas_section s ON s.section_id = i.section_id
    SEMI JOIN rb_canvas_user u ON u.user_id = i.user_id
    WHERE NOT EXISTS (SELECT 1 FROM rb_term_enrollment t WHERE t.section_rank = s.section_rank
                      AND t.user_id = i.user_id AND t.role = i.role AND t.user_known)
) e
JOIN (
    SELECT section_rank, any_value(section_id) AS section_id, any_value(course_id) AS course_id
    FROM rb_canvas_section
    GROUP BY section_rank
) s USING (section_rank)
ORDER BY e.section_rank, e.user_id, e.role
