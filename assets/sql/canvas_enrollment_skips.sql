-- Why enrollments of one term's classes are left out of enrollments.csv, with counts. A user missing
-- from users.csv because another user keeps their login_id has a reason of its own: the SIS record to
-- fix is the login, not the enrollment.
SELECT
    CASE WHEN e.role IS NULL THEN 'role ' || coalesce(e.oneroster_role, '(blank)') || ' is not in MAPPING_ROLES'
         WHEN conflict.user_id IS NOT NULL THEN 'user left out of users.csv: another user keeps its login_id'
         ELSE 'user is not in users.csv' END AS reason,
    count(*) AS enrollments
FROM rb_term_enrollment e
LEFT JOIN (SELECT DISTINCT user_id FROM rb_user_with_conflicting_login) conflict
       ON conflict.user_id = e.user_id AND NOT e.user_known
WHERE e.role IS NULL OR NOT e.user_known
GROUP BY reason
ORDER BY reason
