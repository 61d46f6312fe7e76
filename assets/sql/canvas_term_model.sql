-- One term data set's classes, Canvas courses, sections and enrollments (getvariable('term_id')), on
-- top of canvas_model.sql and the data set's last import (rb_imported_*). Only this data set's rows are
-- materialised, once per term step: the term's files and the skip counts all read them.

-- The classes of this term's data set: the term's own, and those its last Canvas import held that
-- the SIS has since moved to another term (a class scheduled in a second semester now lives in the
-- school year). Canvas diffs a data set only against its own last import, so leaving a moved class
-- out would make this term's import delete the course, section and enrollments that the other
-- term's import has just moved; listed here too, with their new term (the same rows as there), they
-- stay. Classes of the moved classes' terms are read as well, only to complete the rows of their
-- courses (`listed` = a section of this data set).
CREATE TABLE rb_class_in_scope AS
WITH moved_away AS (
    SELECT ct.class_id, ct.term_id
    FROM rb_class_term ct SEMI JOIN rb_imported_section s ON s.section_id = ct.class_id
    WHERE ct.term_id <> getvariable('term_id')
)
SELECT
    c.sourcedId AS class_id,
    rb_text(c.title) AS title,
    rb_text(c.classCode) AS class_code,
    rb_text(c.courseSourcedId) AS course_source_id,
    ct.term_id,
    coalesce(school.account_id, getvariable('root_account_id')) AS account_id,
    rb_deleted(c.status) AS deleted,
    CASE WHEN getvariable('course_mode') = 'per_class' THEN c.sourcedId
         ELSE coalesce(rb_text(c.courseSourcedId), c.sourcedId) || '::' || ct.term_id END AS course_id,
    ct.term_id = getvariable('term_id') OR c.sourcedId IN (SELECT class_id FROM moved_away) AS listed
FROM or_classes c
JOIN rb_class_term ct ON ct.class_id = c.sourcedId
LEFT JOIN rb_account school ON school.org_id = c.schoolSourcedId
WHERE ct.term_id = getvariable('term_id') OR ct.term_id IN (SELECT term_id FROM moved_away);

CREATE TABLE rb_class AS SELECT * EXCLUDE (listed) FROM rb_class_in_scope WHERE listed;

CREATE TABLE rb_canvas_course AS
SELECT
    c.course_id,
    coalesce(c.class_code, c.title, c.class_id) AS short_name,
    coalesce(c.title, c.class_code, c.class_id) AS long_name,
    c.account_id,
    c.term_id,
    c.deleted
FROM rb_class c
WHERE getvariable('course_mode') = 'per_class'
UNION ALL
SELECT
    c.course_id,
    coalesce(any_value(rb_text(co.courseCode)), any_value(rb_text(co.title)),
             first(coalesce(c.class_code, c.title) ORDER BY c.class_id), any_value(c.course_source_id)),
    coalesce(any_value(rb_text(co.title)), any_value(rb_text(co.courseCode)),
             first(coalesce(c.title, c.class_code) ORDER BY c.class_id), any_value(c.course_source_id)),
    coalesce(any_value(org.account_id), first(c.account_id ORDER BY c.class_id)),
    any_value(c.term_id),
    coalesce(bool_or(rb_deleted(co.status)), false) OR bool_and(c.deleted)
FROM rb_class_in_scope c
LEFT JOIN or_courses co ON co.sourcedId = c.course_source_id
LEFT JOIN rb_account org ON org.org_id = co.orgSourcedId
WHERE getvariable('course_mode') = 'per_course_term' AND c.course_id IN (SELECT course_id FROM rb_class)
GROUP BY c.course_id;

-- section_rank orders sections as their ids do: the enrollments sort on it (an integer) instead of
-- the id. Equal ids (a class the SIS sends twice) share a rank.
CREATE TABLE rb_canvas_section AS
SELECT
    c.class_id AS section_id,
    c.course_id,
    coalesce(c.title, c.class_code, c.class_id) AS name,
    c.deleted OR course.deleted AS deleted,
    dense_rank() OVER (ORDER BY c.class_id) AS section_rank
FROM rb_class c
JOIN rb_canvas_course course USING (course_id);

-- Enrollments. A OneRoster role missing from MAPPING_ROLES is skipped, and so is an enrollment whose
-- user is not in users.csv (Canvas would reject it). An enrollment is deleted when it, its user or
-- its section is: Canvas refuses active enrollments of deleted users. OneRoster 1.1 has no "aide"
-- enrollment role: an aide is a user with role aide enrolled as a teacher, so that counts as aide.
-- Only the section's rank is kept: enrollments.csv looks its ids up after de-duplicating.
CREATE TABLE rb_term_enrollment AS
SELECT
    e.section_rank,
    e.user_id,
    e.oneroster_role,
    rm.canvas_role AS role,
    e.deleted,
    e.user_known
FROM (
    SELECT
        s.section_rank,
        e.userSourcedId AS user_id,
        CASE WHEN u.aide AND lower(rb_text(e.role)) = 'teacher' THEN 'aide'
             ELSE lower(rb_text(e.role)) END AS oneroster_role,
        rb_deleted(e.status) OR s.deleted OR coalesce(u.deleted, false) AS deleted,
        u.user_id IS NOT NULL AS user_known
    FROM or_enrollments e
    JOIN rb_canvas_section s ON s.section_id = e.classSourcedId
    LEFT JOIN (
        -- flags rather than strings: a lighter hash table
        SELECT user_id, role = 'aide' AS aide, status = 'deleted' AS deleted FROM rb_canvas_user
    ) u ON u.user_id = e.userSourcedId
) e
LEFT JOIN rb_role_map rm ON rm.oneroster_role = e.oneroster_role;
