-- OneRoster results (after passback_line_items.sql). The export holds only what may be sent: posted
-- grades, excused marks, and ungraded submissions Canvas flags missing.
CREATE OR REPLACE TEMP TABLE assignment_results AS
WITH graded AS (
    SELECT li.sourced_id AS line_item_id, li.course_id, li.sis_course_id, li.class_sourced_id,
           st.sis_user_id AS student_id,
           CASE WHEN s.excused THEN 'exempt'
                WHEN s.score IS NOT NULL AND s.workflow_state = 'pending_review' THEN 'partially graded'
                WHEN s.score IS NOT NULL THEN 'fully graded'
                WHEN s.missing AND p.missing_policy = 'not_submitted' THEN 'not submitted'
           END AS score_status,
           s.score,
           passback_local_date(coalesce(s.graded_at, li.due_at, s.posted_at), p.tz) AS score_date,
           -- A comment is visible to the student only once the submission is posted: a missing or
           -- ungraded submission is sent with its status, but its hidden comment never leaves Canvas.
           CASE WHEN p.send_comments AND s.posted_at IS NOT NULL THEN s.comment END AS comment,
           p.ns_hex
    FROM assignment_line_items li
    JOIN class_students st ON st.course_id = li.course_id AND st.class_sourced_id = li.class_sourced_id
    JOIN export_submissions s
      ON s.course_id = li.course_id AND s.assignment_id = li.assignment_id AND s.user_id = st.user_id
    CROSS JOIN params p
)
SELECT passback_uuid5(ns_hex, 'result:' || line_item_id || ':' || student_id) AS sourced_id,
       line_item_id, course_id, sis_course_id, class_sourced_id, student_id, score_status,
       CASE WHEN score_status IN ('fully graded', 'partially graded') THEN score ELSE 0.0 END AS score,
       score_date, comment
FROM graded
WHERE score_status IS NOT NULL;

-- Course grades: the student's course score (current or final, per setting), dated by their latest
-- graded submission in the course so that an unchanged score keeps an unchanged payload.
CREATE OR REPLACE TEMP TABLE course_grade_results AS
SELECT passback_uuid5(p.ns_hex, 'result:' || li.sourced_id || ':' || st.sis_user_id) AS sourced_id,
       li.sourced_id AS line_item_id, li.course_id, li.sis_course_id, li.class_sourced_id,
       st.sis_user_id AS student_id, 'fully graded' AS score_status, st.course_score AS score,
       coalesce(
           (SELECT passback_local_date(max(s.graded_at), p.tz) FROM export_submissions s
            WHERE s.course_id = st.course_id AND s.user_id = st.user_id),
           passback_local_date(li.due_at, p.tz)) AS score_date
FROM course_grade_items li
JOIN class_students st ON st.course_id = li.course_id AND st.class_sourced_id = li.class_sourced_id
CROSS JOIN params p
WHERE st.course_score IS NOT NULL;

CREATE OR REPLACE TEMP TABLE results AS
SELECT r.*,
       json_object(
           'sourcedId', r.sourced_id,
           'status', 'active',
           'lineItem', passback_ref(r.line_item_id, 'lineItem'),
           'student', passback_ref(r.student_id, 'user'),
           'scoreStatus', r.score_status,
           'score', r.score,
           'scoreDate', strftime(r.score_date, '%Y-%m-%d'),
           'comment', r.comment
       ) AS payload
FROM (SELECT * FROM assignment_results UNION ALL BY NAME SELECT * FROM course_grade_results) r;

-- Every (lineItem, student placed in its class) without a result today. A result the SIS holds for one of
-- these has left Canvas's export (grade cleared or hidden again, excuse removed, missing work handed in
-- but not graded yet) and is removed (passback_changed.sql). A result whose lineItem or student is not
-- computed today (class or student missing from the snapshot, item skipped) is not in this table: the
-- SIS keeps it.
CREATE OR REPLACE TEMP TABLE empty_result_slots AS
SELECT passback_uuid5(p.ns_hex, 'result:' || li.sourced_id || ':' || st.sis_user_id) AS sourced_id
FROM line_items li
JOIN class_students st ON st.course_id = li.course_id AND st.class_sourced_id = li.class_sourced_id
CROSS JOIN params p
EXCEPT
SELECT sourced_id FROM results;
