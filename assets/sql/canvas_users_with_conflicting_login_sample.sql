-- The first users left out for a login_id another user keeps, and who keeps it: the records a data
-- engineer has to fix in the SIS (ids only; the login itself is personal data).
SELECT user_id, login_owner_id AS login_kept_by FROM rb_user_with_conflicting_login ORDER BY ALL LIMIT 25
