-- Which OneRoster class each Canvas section stands for, who sits in it, and its grading periods.
-- Inputs: export_* (the Canvas gradebook export), or_classes, or_sessions, or_users (OneRoster snapshot),
-- params (one row of settings).

-- The courses the export gathered and each one's watermark: what a sending step marks synced.
CREATE OR REPLACE TEMP TABLE gathered_courses AS
SELECT sis_course_id, graded_through FROM export_courses;

-- A section is a class when its SIS id is a OneRoster class (course mapping mode: sections carry the
-- class sourcedId); otherwise its course's SIS id may be the class (1:1 mode). Sections of neither kind
-- were not provisioned from the SIS (a teacher's own section): their students are reported, not sent.
CREATE OR REPLACE TEMP TABLE class_sections AS
SELECT s.course_id,
       c.sis_course_id,
       s.section_id,
       s.sis_section_id,
       CASE WHEN by_section.sourcedId IS NOT NULL THEN by_section.sourcedId
            WHEN by_course.sourcedId IS NOT NULL THEN by_course.sourcedId END AS class_sourced_id
FROM export_sections s
JOIN export_courses c USING (course_id)
LEFT JOIN or_classes by_section ON by_section.sourcedId = s.sis_section_id
LEFT JOIN or_classes by_course ON by_course.sourcedId = c.sis_course_id;

-- Students per class with their course scores (an enrollment per section they sit in).
CREATE OR REPLACE TEMP TABLE class_students AS
SELECT DISTINCT cs.course_id,
       cs.sis_course_id,
       cs.class_sourced_id,
       e.user_id,
       e.sis_user_id,
       CASE (SELECT course_score FROM params) WHEN 'final' THEN e.final_score ELSE e.current_score END
           AS course_score
FROM export_enrollments e
JOIN class_sections cs ON cs.course_id = e.course_id AND cs.section_id = e.section_id
JOIN or_users u ON u.sourcedId = e.sis_user_id
WHERE cs.class_sourced_id IS NOT NULL;

-- The grading periods of each class: gradingPeriod sessions below any of the class's terms (directly,
-- or under a semester of a school-year term). A term without grading periods grades into itself.
CREATE OR REPLACE TEMP TABLE class_periods AS
WITH RECURSIVE class_terms AS (
    SELECT DISTINCT c.sourcedId AS class_sourced_id, UNNEST(c.termSourcedIds) AS term_id
    FROM or_classes c
    WHERE c.sourcedId IN (SELECT class_sourced_id FROM class_sections)
),
below (class_sourced_id, session_id, depth) AS (
    SELECT class_sourced_id, term_id, 0 FROM class_terms
    UNION ALL
    SELECT b.class_sourced_id, s.sourcedId, b.depth + 1
    FROM below b JOIN or_sessions s ON s.parentSourcedId = b.session_id
    WHERE b.depth < 4
),
periods AS (
    SELECT DISTINCT b.class_sourced_id, s.sourcedId AS period_id, s.title, s.startDate, s.endDate
    FROM below b JOIN or_sessions s ON s.sourcedId = b.session_id
    WHERE s.type = 'gradingPeriod'
)
SELECT * FROM periods
UNION ALL
SELECT DISTINCT t.class_sourced_id, s.sourcedId, s.title, s.startDate, s.endDate
FROM class_terms t JOIN or_sessions s ON s.sourcedId = t.term_id
WHERE t.class_sourced_id NOT IN (SELECT class_sourced_id FROM periods);

-- The period a local date belongs to: the one containing it (the shortest when several do), else the
-- last one begun before it, else the first one.
CREATE OR REPLACE TEMP MACRO passback_period_rank(day, start_date, end_date) AS
    [CASE WHEN day BETWEEN start_date AND end_date THEN 0 WHEN start_date <= day THEN 1 ELSE 2 END,
     CASE WHEN day BETWEEN start_date AND end_date THEN end_date - start_date
          WHEN start_date <= day THEN day - end_date ELSE start_date - day END];
