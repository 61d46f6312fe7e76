-- Why enrollments of one term's classes are left out of enrollments.csv, with counts.
SELECT
    CASE WHEN role IS NULL THEN 'role ' || coalesce(oneroster_role, '(blank)') || ' is not in MAPPING_ROLES'
         ELSE 'user is not in users.csv' END AS reason,
    count(*) AS enrollments
FROM rb_term_enrollment
WHERE role IS NULL OR NOT user_known
GROUP BY reason
ORDER BY reason
