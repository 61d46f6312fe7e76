-- The OneRoster -> Canvas mapping shared by every Canvas CSV and by school_term discovery: the
-- district-wide part (accounts, terms, which term each class lives in, users). A term step adds
-- canvas_term_model.sql (that term's courses, sections and enrollments).
-- Reads the views or_orgs, or_academic_sessions, or_classes, or_users (columns:
-- pipeline/oneroster/schema.py), the table rb_role_map, the macros rb_account_name and
-- rb_term_name and the variables set by MappingSettings (pipeline/resources/mapping.py).

-- Canvas strips every value (Ruby's strip: space, \t \n \v \f \r and NUL) and treats an empty one
-- as missing. Doing the same here means a blank OneRoster field falls back to the next candidate
-- instead of reaching Canvas as "no value". Most values neither start nor end with whitespace: they
-- skip the (slow) trim with a character set.
CREATE MACRO rb_whitespace() AS ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(0);
CREATE MACRO rb_text(s) AS
    CASE WHEN s = '' THEN NULL
         WHEN ord(s[1]) > 32 AND ord(s[-1]) > 32 THEN s
         ELSE nullif(trim(s, rb_whitespace()), '') END;
-- OneRoster 1.0's `inactive` (still sent by some providers) means no longer in use, as 1.1's `tobedeleted`.
CREATE MACRO rb_deleted(status) AS coalesce(lower(trim(status)) IN ('tobedeleted', 'inactive'), false);
-- A term runs from the first second of its first day to the last second of its last day, in the
-- district's time zone (the session's TimeZone, MAPPING_TIME_ZONE), written with its UTC offset
-- because Canvas reads a timestamp without one as UTC.
CREATE MACRO rb_offset_text(seconds) AS
    CASE WHEN seconds = 0 THEN 'Z'
         ELSE CASE WHEN seconds > 0 THEN '+' ELSE '-' END
              || lpad((abs(seconds) // 3600)::VARCHAR, 2, '0') || ':'
              || lpad((abs(seconds) % 3600 // 60)::VARCHAR, 2, '0') END;
-- `local` is a wall-clock TIMESTAMP: cast to TIMESTAMPTZ it is read in the session's time zone.
CREATE MACRO rb_local_time(local) AS
    strftime(local, '%Y-%m-%dT%H:%M:%S') || rb_offset_text((epoch(local) - epoch(local::TIMESTAMPTZ))::BIGINT);
CREATE MACRO rb_start(d) AS rb_local_time(d::TIMESTAMP);
CREATE MACRO rb_end(d) AS rb_local_time(d::TIMESTAMP + INTERVAL 86399 SECOND);

-- ---------------------------------------------------------------------------------------------
-- Orgs -> accounts. A parent that is not in the snapshot (or the org itself) means "top level":
-- the account goes under MAPPING_ROOT_ACCOUNT_ID (empty = Canvas's root account).
CREATE TABLE rb_org AS
SELECT
    o.sourcedId AS org_id,
    CASE WHEN getvariable('account_id_from') = 'identifier'
         THEN coalesce(rb_text(o.identifier), o.sourcedId) ELSE o.sourcedId END AS account_id,
    coalesce(rb_text(rb_account_name(rb_text(o.name), rb_text(o.identifier), rb_text(o.type), o.sourcedId)),
             o.sourcedId) AS name,
    nullif(rb_text(o.parentSourcedId), o.sourcedId) AS parent_org_id,
    rb_deleted(o.status) AS deleted
FROM or_orgs o;

-- Depth in the org tree: Canvas needs every parent listed before its children. Orgs on a parent
-- cycle are never reached from a top-level org and are reported by rb_org_cycle.
CREATE TABLE rb_account AS
WITH RECURSIVE tree(org_id, depth, path) AS (
    SELECT org_id, 0, [org_id]
    FROM rb_org
    WHERE parent_org_id IS NULL OR parent_org_id NOT IN (SELECT org_id FROM rb_org)
    UNION ALL
    SELECT child.org_id, tree.depth + 1, list_append(tree.path, child.org_id)
    FROM tree JOIN rb_org child ON child.parent_org_id = tree.org_id
    WHERE NOT list_contains(tree.path, child.org_id)
)
SELECT
    o.org_id,
    o.account_id,
    coalesce(parent.account_id, getvariable('root_account_id')) AS parent_account_id,
    o.name,
    o.deleted,
    d.depth
FROM rb_org o
JOIN (SELECT org_id, min(depth) AS depth FROM tree GROUP BY org_id) d USING (org_id)
LEFT JOIN (SELECT org_id, any_value(account_id) AS account_id FROM rb_org GROUP BY org_id) parent
       ON parent.org_id = o.parent_org_id;

CREATE VIEW rb_org_cycle AS
SELECT org_id, parent_org_id FROM rb_org WHERE org_id NOT IN (SELECT org_id FROM rb_account);

-- ---------------------------------------------------------------------------------------------
-- Academic sessions -> terms. Sessions of MAPPING_TERM_TYPES are Canvas terms. Any other session
-- (a grading period, say) stands for its nearest ancestor that is one.
CREATE TABLE rb_session AS
SELECT
    s.sourcedId AS session_id,
    rb_text(s.title) AS title,
    rb_text(s.type) AS type,
    s.startDate AS start_date,
    s.endDate AS end_date,
    nullif(rb_text(s.parentSourcedId), s.sourcedId) AS parent_id,
    rb_text(s.schoolYear) AS school_year,
    rb_deleted(s.status) AS deleted,
    coalesce(list_contains(getvariable('term_types'), lower(rb_text(s.type))), false) AS is_term
FROM or_academic_sessions s;

CREATE TABLE rb_session_term AS
WITH RECURSIVE up(session_id, ancestor_id, depth, path) AS (
    SELECT session_id, session_id, 0, [session_id] FROM rb_session
    UNION ALL
    SELECT up.session_id, s.parent_id, up.depth + 1, list_append(up.path, s.parent_id)
    FROM up JOIN rb_session s ON s.session_id = up.ancestor_id
    WHERE NOT s.is_term AND s.parent_id IS NOT NULL AND NOT list_contains(up.path, s.parent_id)
)
SELECT up.session_id, arg_min(up.ancestor_id, up.depth) AS term_id
FROM up JOIN rb_session t ON t.session_id = up.ancestor_id AND t.is_term
GROUP BY up.session_id;

-- Term-type sessions and their term-type ancestors (a session is its own, at depth 0).
CREATE TABLE rb_term_ancestor AS
WITH RECURSIVE up(term_id, ancestor_id, depth, path) AS (
    SELECT session_id, session_id, 0, [session_id] FROM rb_session WHERE is_term
    UNION ALL
    SELECT up.term_id, s.parent_id, up.depth + 1, list_append(up.path, s.parent_id)
    FROM up JOIN rb_session s ON s.session_id = up.ancestor_id
    WHERE s.parent_id IS NOT NULL AND NOT list_contains(up.path, s.parent_id)
)
SELECT up.term_id, up.ancestor_id, min(up.depth) AS depth
FROM up JOIN rb_session a ON a.session_id = up.ancestor_id AND a.is_term
GROUP BY up.term_id, up.ancestor_id;

-- ---------------------------------------------------------------------------------------------
-- Classes. A Canvas course has exactly one term, and one term's data set must own it. A class
-- scheduled in several terms lives in the closest term that contains them all (a year-long class
-- listed in both semesters lives in the school year, so Canvas does not end it with the first
-- semester), or, when no such term exists, in the one it starts in (earliest start date, then id).
CREATE TABLE rb_class_term AS
WITH class_session AS (
    SELECT c.class_id, st.term_id
    FROM (SELECT sourcedId AS class_id, unnest(termSourcedIds) AS session_id FROM or_classes) c
    JOIN rb_session_term st USING (session_id)
), class_terms AS (
    -- Nearly every class is scheduled in one term: only the others need the search below.
    SELECT class_id, min(term_id) AS term_id, min(term_id) <> max(term_id) AS several
    FROM class_session
    GROUP BY class_id
), multi_term AS (
    SELECT DISTINCT cs.class_id, cs.term_id
    FROM class_session cs SEMI JOIN class_terms z ON z.class_id = cs.class_id AND z.several
), class_size AS (
    SELECT class_id, count(*) AS terms FROM multi_term GROUP BY class_id
), covering AS (
    SELECT cs.class_id, ta.ancestor_id AS term_id, max(ta.depth) AS depth, count(*) AS covered
    FROM multi_term cs JOIN rb_term_ancestor ta USING (term_id)
    GROUP BY cs.class_id, ta.ancestor_id
), closest AS (
    SELECT cv.class_id, first(cv.term_id ORDER BY cv.depth, cv.term_id) AS term_id
    FROM covering cv JOIN class_size z ON z.class_id = cv.class_id AND cv.covered = z.terms
    GROUP BY cv.class_id
), earliest AS (
    SELECT cs.class_id, first(cs.term_id ORDER BY t.start_date NULLS LAST, cs.term_id) AS term_id
    FROM multi_term cs JOIN rb_session t ON t.session_id = cs.term_id
    GROUP BY cs.class_id
)
SELECT class_id, term_id FROM class_terms WHERE NOT several
UNION ALL
SELECT e.class_id, coalesce(c.term_id, e.term_id) AS term_id
FROM earliest e LEFT JOIN closest c USING (class_id);

-- Classes whose sessions are not (and roll up to no) MAPPING_TERM_TYPES session: in no term's files.
CREATE VIEW rb_class_without_term AS
SELECT c.sourcedId AS class_id FROM or_classes c ANTI JOIN rb_class_term ct ON ct.class_id = c.sourcedId;

-- ---------------------------------------------------------------------------------------------
-- Users. Guardians take part only when observers are enabled. A user without a login_id cannot be
-- imported (Canvas: "No login_id given for user"), rb_user_without_login lists them. users.csv is
-- rb_canvas_user: the users with a login_id that no other user keeps (see rb_user_with_conflicting_login).
CREATE VIEW rb_user AS
SELECT
    u.sourcedId AS user_id,
    CASE getvariable('login_id_from')
        WHEN 'email' THEN rb_text(u.email)
        WHEN 'identifier' THEN rb_text(u.identifier)
        ELSE rb_text(u.username) END AS login_id,
    getvariable('authentication_provider_id') AS authentication_provider_id,
    rb_text(u.givenName) AS first_name,
    rb_text(u.familyName) AS last_name,
    rb_text(u.email) AS email,
    CASE WHEN rb_deleted(u.status) THEN 'deleted'
         WHEN u.enabledUser = false THEN getvariable('disabled_user_status')
         ELSE 'active' END AS status,
    coalesce(lower(rb_text(u.role)), '') AS role,
    u.agentSourcedIds AS agent_ids
FROM or_users u
WHERE getvariable('observers')
   OR NOT list_contains(getvariable('guardian_roles'), coalesce(lower(rb_text(u.role)), ''));

CREATE VIEW rb_user_without_login AS SELECT user_id, role FROM rb_user WHERE login_id IS NULL;

-- Users whose login_id another user also has, ignoring case: canvas_model_users.sql decides who keeps
-- it (after the session has read, only when there are any, who held it in Canvas's last import). A
-- table, built once per session (one scan of the users), nearly always empty.
CREATE TABLE rb_shared_login_user AS
SELECT user_id, role, status, lower(login_id) AS login_key
FROM rb_user
WHERE login_id IS NOT NULL
QUALIFY count(*) OVER (PARTITION BY login_key) > 1;
