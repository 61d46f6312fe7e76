-- enrollments.csv of one term. Duplicate OneRoster enrollments of one user, section and role become
-- one row (Canvas identifies an enrollment by them), active if any of them is. A section belongs to
-- one course, so (section_id, user_id, role) is the whole sort key.
SELECT
    any_value(course_id) AS course_id,
    section_id,
    user_id,
    role,
    CASE WHEN bool_and(deleted) THEN 'deleted' ELSE 'active' END AS status
FROM rb_term_enrollment
WHERE role IS NOT NULL AND user_known
GROUP BY section_id, user_id, role
ORDER BY section_id, user_id, role
