-- The users of users.csv, on top of canvas_model.sql and rb_imported_login (user_id, login_key: the
-- logins the district's last Canvas import gave the users in rb_shared_login_user).
--
-- A login belongs to one SIS user. Canvas compares logins ignoring case and refuses a login another
-- SIS id has claimed ("... has already claimed ...'s user_id requested login information"); by the
-- rules the blocking check applies (pipeline/canvas_rules.py, as the demo Canvas), a deleted user's
-- login stays claimed too. So of the users whose login_id is equal ignoring case, one keeps it and the
-- others are left out like users without a login_id. First whoever already holds it in Canvas (the
-- last import gave it to them) and is not deleted now: a new duplicate record in the SIS, or the
-- holder turning suspended, must not make Canvas's diff delete an established user. Then whoever can
-- still sign in with it: an active user before a suspended one before a deleted one (real Canvas frees
-- a deleted user's login, so the keeper's login is never one Canvas has to refuse), then the smallest
-- sourcedId, so the same user keeps it every night whatever order the SIS pages in. Records of one
-- sourcedId never conflict with each other (they are one Canvas user).
CREATE TABLE rb_user_with_conflicting_login AS
SELECT user_id, role, login_owner_id
FROM (
    SELECT
        s.user_id,
        s.role,
        first(s.user_id) OVER (
            PARTITION BY s.login_key
            ORDER BY CASE WHEN held.user_id IS NOT NULL AND s.status <> 'deleted' THEN 0 ELSE 1 END,
                     CASE s.status WHEN 'active' THEN 0 WHEN 'deleted' THEN 2 ELSE 1 END, s.user_id
        ) AS login_owner_id
    FROM rb_shared_login_user s
    LEFT JOIN (SELECT DISTINCT user_id, login_key FROM rb_imported_login) held
           ON held.user_id = s.user_id AND held.login_key = s.login_key
)
WHERE user_id <> login_owner_id;

CREATE VIEW rb_canvas_user AS
SELECT * FROM rb_user u
WHERE login_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM rb_user_with_conflicting_login c WHERE c.user_id = u.user_id);

-- Guardian <-> student links: OneRoster lists agents on either side, so both directions count.
CREATE VIEW rb_canvas_user_observer AS
WITH guardian AS (
    SELECT * FROM rb_canvas_user WHERE list_contains(getvariable('guardian_roles'), role)
), student AS (
    SELECT * FROM rb_canvas_user WHERE role = 'student'
), link AS (
    SELECT user_id AS observer_id, unnest(agent_ids) AS student_id FROM guardian
    UNION
    SELECT unnest(agent_ids) AS observer_id, user_id AS student_id FROM student
)
SELECT
    link.observer_id,
    link.student_id,
    CASE WHEN g.status = 'deleted' OR s.status = 'deleted' THEN 'deleted' ELSE 'active' END AS status
FROM link
JOIN guardian g ON g.user_id = link.observer_id
JOIN student s ON s.user_id = link.student_id
WHERE getvariable('observers') AND link.observer_id <> link.student_id;
