-- users.csv: staff and students (and guardians when MAPPING_OBSERVERS=true) that have a login_id no
-- other user keeps (rb_user_with_conflicting_login).
SELECT user_id, login_id, authentication_provider_id, first_name, last_name, email, status
FROM rb_canvas_user
ORDER BY ALL
