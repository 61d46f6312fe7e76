-- Users left out of users.csv for want of a login_id, counted by OneRoster role.
SELECT role, count(*) AS users FROM rb_user_without_login GROUP BY role ORDER BY role
