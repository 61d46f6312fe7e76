-- What the export holds but cannot be sent, with the reason (shown in the UI, never silently dropped).
CREATE OR REPLACE TEMP TABLE skipped AS
SELECT 'section' AS kind, sis_course_id, coalesce(sis_section_id, section_id::VARCHAR) AS ref,
       'section is not a OneRoster class (not provisioned from the SIS): its grades are not sent' AS reason
FROM class_sections WHERE class_sourced_id IS NULL
UNION ALL
SELECT 'student', cs.sis_course_id, coalesce(e.sis_user_id, 'canvas user ' || e.user_id),
       CASE WHEN e.sis_user_id IS NULL THEN 'Canvas user has no SIS user id'
            ELSE 'SIS user id is not a OneRoster user in the latest snapshot' END
FROM export_enrollments e
JOIN class_sections cs ON cs.course_id = e.course_id AND cs.section_id = e.section_id
WHERE cs.class_sourced_id IS NOT NULL
  AND (e.sis_user_id IS NULL OR e.sis_user_id NOT IN (SELECT sourcedId FROM or_users))
UNION ALL
SELECT 'assignment', d.sis_course_id, d.assignment_id || ' ' || d.name || ' (class ' || d.class_sourced_id || ')',
       CASE WHEN d.class_due_at IS NULL AND (SELECT undated_policy FROM params) = 'skip'
                THEN 'assignment has no due date and PASSBACK_UNDATED_ITEMS=skip'
            WHEN NOT EXISTS (SELECT 1 FROM class_periods p WHERE p.class_sourced_id = d.class_sourced_id)
                THEN 'class has no term or grading period in the OneRoster snapshot'
            ELSE 'no SIS category titled ' || coalesce(d.group_name, 'Assignments')
                 || ' and PASSBACK_FALLBACK_CATEGORY is empty' END
FROM dated_items d
WHERE NOT EXISTS (SELECT 1 FROM assignment_line_items li
                  WHERE li.course_id = d.course_id AND li.assignment_id = d.assignment_id
                    AND li.class_sourced_id = d.class_sourced_id)
UNION ALL
SELECT 'assignment', c.sis_course_id, a.assignment_id || ' ' || a.name,
       'assignment marked Sync to SIS has no points possible (the SIS needs resultValueMax)'
FROM export_assignments a JOIN export_courses c USING (course_id)
WHERE a.published AND a.post_to_sis AND a.grading_type <> 'not_graded' AND a.points_possible IS NULL;
