-- OneRoster categories and lineItems from the Canvas export (after passback_classes.sql).

-- Assignments the SIS may see: published, "Sync to SIS" and graded. Kind: assignment, discussion, quiz.
CREATE OR REPLACE TEMP TABLE sis_assignments AS
SELECT a.*, g.name AS group_name
FROM export_assignments a
LEFT JOIN export_assignment_groups g ON g.course_id = a.course_id AND g.group_id = a.assignment_group_id
WHERE a.published AND a.post_to_sis AND a.grading_type <> 'not_graded' AND a.points_possible IS NOT NULL;

-- The gathered courses' assignments that Canvas still has, published and Sync to SIS (whatever their
-- grading type): a lineItem of any other assignment has left Canvas (passback_changed.sql).
CREATE OR REPLACE TEMP TABLE sis_assignment_ids AS
SELECT c.sis_course_id, a.assignment_id
FROM export_assignments a JOIN export_courses c USING (course_id)
WHERE a.published AND a.post_to_sis;

-- One lineItem per (assignment, class it is assigned to). Section overrides decide both: an assignment
-- only visible to overrides goes to the classes of the overridden sections, and a class's due date is its
-- sections' override (the latest, when several of its sections differ) before the assignment's own.
CREATE OR REPLACE TEMP TABLE assignment_classes AS
SELECT a.course_id, a.assignment_id, cs.class_sourced_id,
       bool_or(o.section_id IS NOT NULL) AS overridden,
       max(o.due_at) AS override_due_at
FROM sis_assignments a
JOIN class_sections cs ON cs.course_id = a.course_id AND cs.class_sourced_id IS NOT NULL
LEFT JOIN export_overrides o
       ON o.course_id = a.course_id AND o.assignment_id = a.assignment_id AND o.section_id = cs.section_id
GROUP BY ALL
HAVING bool_or(o.section_id IS NOT NULL) OR NOT any_value(a.only_visible_to_overrides);

CREATE OR REPLACE TEMP TABLE dated_items AS
SELECT a.*, ac.class_sourced_id,
       CASE WHEN ac.overridden THEN ac.override_due_at ELSE a.due_at END AS class_due_at,
       cs.sis_course_id
FROM sis_assignments a
JOIN assignment_classes ac USING (course_id, assignment_id)
JOIN (SELECT DISTINCT course_id, sis_course_id FROM class_sections) cs USING (course_id);

-- The local day each item is graded on: its due date, or for an undated item (when the setting keeps
-- them) the end of the class's last grading period.
CREATE OR REPLACE TEMP TABLE item_periods AS
SELECT d.course_id, d.assignment_id, d.class_sourced_id, p.period_id, p.endDate AS period_end,
       d.class_due_at
FROM dated_items d
JOIN class_periods p ON p.class_sourced_id = d.class_sourced_id
WHERE d.class_due_at IS NOT NULL
   OR (SELECT undated_policy FROM params) = 'last_grading_period'
QUALIFY row_number() OVER (
    PARTITION BY d.course_id, d.assignment_id, d.class_sourced_id
    ORDER BY CASE WHEN d.class_due_at IS NULL THEN [0, DATE '1970-01-01' - p.endDate]
                  ELSE passback_period_rank(passback_local_date(d.class_due_at, (SELECT tz FROM params)),
                                            p.startDate, p.endDate) END,
             p.period_id
) = 1;

-- Categories: one per assignment-group title (create mode), or the SIS's category of that title, or the
-- configured fallback (match mode, for providers that do not accept category writes).
CREATE OR REPLACE TEMP TABLE wanted_categories AS
SELECT DISTINCT group_title AS title FROM (
    SELECT coalesce(group_name, 'Assignments') AS group_title FROM dated_items
    UNION ALL
    SELECT course_grade_category FROM params WHERE course_grades
);

CREATE OR REPLACE TEMP TABLE category_ids AS
SELECT w.title,
       CASE WHEN p.category_mode = 'create'
                THEN passback_uuid5(p.ns_hex, 'category:' || passback_title_key(w.title))
            ELSE coalesce(
                (SELECT min(s.sourcedId) FROM sis_categories s
                 WHERE passback_title_key(s.title) = passback_title_key(w.title)),
                nullif(p.fallback_category, ''))
       END AS category_id
FROM wanted_categories w, params p;

CREATE OR REPLACE TEMP TABLE categories AS
SELECT category_id AS sourced_id,
       min(title) AS title,
       json_object('sourcedId', category_id, 'status', 'active', 'title', min(title)) AS payload
FROM category_ids, params
WHERE category_mode = 'create'
GROUP BY category_id;

CREATE OR REPLACE TEMP TABLE assignment_line_items AS
SELECT passback_uuid5(p.ns_hex, 'lineItem:' || d.class_sourced_id || ':' || d.assignment_id) AS sourced_id,
       'lineItem' AS kind,
       d.course_id, d.sis_course_id, d.class_sourced_id, d.assignment_id,
       c.category_id, ip.period_id, d.class_due_at AS due_at,
       json_object(
           'sourcedId', passback_uuid5(p.ns_hex, 'lineItem:' || d.class_sourced_id || ':' || d.assignment_id),
           'status', 'active',
           'title', d.name,
           'description', nullif(trim(regexp_replace(coalesce(d.description, ''), '<[^>]*>', ' ', 'g')), ''),
           'assignDate', passback_datetime(coalesce(d.unlock_at, d.created_at, d.class_due_at,
                                                    passback_day_start(ip.period_end, p.tz))),
           'dueDate', passback_datetime(coalesce(d.class_due_at, passback_day_end(ip.period_end, p.tz))),
           'class', passback_ref(d.class_sourced_id, 'class'),
           'category', passback_ref(c.category_id, 'category'),
           'gradingPeriod', passback_ref(ip.period_id, 'academicSession'),
           'resultValueMin', 0.0,
           'resultValueMax', d.points_possible,
           'metadata', json_object('canvasCourseId', d.course_id, 'canvasAssignmentId', d.assignment_id,
                                   'canvasType', d.kind)
       ) AS payload
FROM dated_items d
JOIN item_periods ip USING (course_id, assignment_id, class_sourced_id)
JOIN category_ids c ON c.title = coalesce(d.group_name, 'Assignments') AND c.category_id IS NOT NULL
CROSS JOIN params p;

-- Course grades: per class, one lineItem for the grading period of the `as_of` day (a new one when the
-- next period begins; earlier ones keep the score they last received).
CREATE OR REPLACE TEMP TABLE course_grade_items AS
SELECT passback_uuid5(p.ns_hex, 'courseGrade:' || cp.class_sourced_id || ':' || cp.period_id) AS sourced_id,
       'courseGrade' AS kind,
       cs.course_id, cs.sis_course_id, cp.class_sourced_id, NULL::BIGINT AS assignment_id,
       c.category_id, cp.period_id, passback_day_start(cp.startDate, p.tz) AS due_at,
       json_object(
           'sourcedId', passback_uuid5(p.ns_hex, 'courseGrade:' || cp.class_sourced_id || ':' || cp.period_id),
           'status', 'active',
           'title', replace(p.course_grade_title, '{grading_period}', cp.title),
           'assignDate', passback_datetime(passback_day_start(cp.startDate, p.tz)),
           'dueDate', passback_datetime(passback_day_end(cp.endDate, p.tz)),
           'class', passback_ref(cp.class_sourced_id, 'class'),
           'category', passback_ref(c.category_id, 'category'),
           'gradingPeriod', passback_ref(cp.period_id, 'academicSession'),
           'resultValueMin', 0.0,
           'resultValueMax', 100.0
       ) AS payload
FROM class_periods cp
JOIN (SELECT DISTINCT course_id, sis_course_id, class_sourced_id FROM class_sections
      WHERE class_sourced_id IS NOT NULL) cs USING (class_sourced_id)
CROSS JOIN params p
JOIN category_ids c ON c.title = p.course_grade_category AND c.category_id IS NOT NULL
WHERE p.course_grades
QUALIFY row_number() OVER (
    PARTITION BY cp.class_sourced_id, cs.course_id
    ORDER BY passback_period_rank(p.as_of, cp.startDate, cp.endDate), cp.period_id
) = 1;

CREATE OR REPLACE TEMP TABLE line_items AS
SELECT * FROM assignment_line_items
UNION ALL BY NAME
SELECT * FROM course_grade_items;
