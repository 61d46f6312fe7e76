-- Users left out of users.csv because another user keeps their login_id (equal ignoring case),
-- counted by OneRoster role.
SELECT role, count(*) AS users FROM rb_user_with_conflicting_login GROUP BY role ORDER BY role
