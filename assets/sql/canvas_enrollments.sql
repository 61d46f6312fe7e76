-- enrollments.csv of one term. Duplicate OneRoster enrollments of one user, section and role become
-- one row (Canvas identifies an enrollment by them), active if any of them is.
SELECT
    course_id,
    section_id,
    user_id,
    role,
    CASE WHEN bool_and(deleted) THEN 'deleted' ELSE 'active' END AS status
FROM rb_enrollment
WHERE term_id = getvariable('term_id') AND role IS NOT NULL AND user_known
GROUP BY course_id, section_id, user_id, role
ORDER BY ALL
