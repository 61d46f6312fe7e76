-- What to send: every object whose payload differs from what the SIS last accepted (ledger_hashes),
-- in dependency order (phase 1 categories, 2 lineItems, 3 results). `parent_id` is what an object
-- needs the SIS to hold first. Inputs: obj_categories, obj_line_items, obj_results, ledger_hashes.
CREATE OR REPLACE TEMP TABLE pending AS
SELECT 1 AS phase, 'category' AS kind, o.sourced_id, o.payload, o.payload_hash,
       NULL::VARCHAR AS sis_course_id, NULL::VARCHAR AS line_item_id, NULL::VARCHAR AS parent_id,
       NULL::BIGINT AS assignment_id
FROM obj_categories o LEFT JOIN ledger_hashes l USING (sourced_id)
-- A category is PUT until the SIS accepts it, then never again: its id is its title's key (case and
-- spacing folded), so the only difference between runs is which spelling of the title the courses a run
-- gathered use ("Homework" / "homework"); the first title the SIS accepted stays, rather than flipping
-- with each run.
WHERE l.accepted_hash IS NULL
UNION ALL
SELECT 2, o.kind, o.sourced_id, o.payload, o.payload_hash, o.sis_course_id, NULL, o.category_id, o.assignment_id
FROM obj_line_items o LEFT JOIN ledger_hashes l USING (sourced_id)
WHERE l.accepted_hash IS DISTINCT FROM o.payload_hash
UNION ALL
SELECT 3, 'result', o.sourced_id, o.payload, o.payload_hash, o.sis_course_id, o.line_item_id, o.line_item_id, NULL
FROM obj_results o LEFT JOIN ledger_hashes l USING (sourced_id)
WHERE l.accepted_hash IS DISTINCT FROM o.payload_hash;

-- Assignment lineItems this pipeline wrote for the gathered courses whose Canvas assignment left: deleted,
-- unpublished or no longer marked Sync to SIS (obj_sis_assignment_ids: the gathered courses' assignments that
-- are published and Sync to SIS). A lineItem that is merely not computed today (its class missing from the
-- snapshot, an undated item skipped, a category not matched, a section override removed) is not an
-- orphan: it is about the mapping, not about Canvas. Ledger rows without an assignment (written before
-- it was recorded) are never orphans. Input: ledger_line_items (kind lineItem, of these courses).
CREATE OR REPLACE TEMP TABLE orphan_line_items AS
SELECT l.sourced_id, l.sis_course_id
FROM ledger_line_items l
WHERE l.canvas_assignment_id IS NOT NULL
  AND l.sourced_id NOT IN (SELECT sourced_id FROM obj_line_items)
  AND NOT EXISTS (SELECT 1 FROM obj_sis_assignment_ids a
                  WHERE a.sis_course_id = l.sis_course_id AND a.assignment_id = l.canvas_assignment_id);

-- Results the SIS holds (this pipeline wrote them) that no longer hold in Canvas: removed with DELETE.
-- Input: ledger_results (accepted results of these courses).
CREATE OR REPLACE TEMP TABLE stale_results AS
SELECT l.sourced_id, l.sis_course_id
FROM ledger_results l
JOIN obj_empty_result_slots USING (sourced_id);
