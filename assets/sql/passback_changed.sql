-- What to send: every object whose payload differs from what the SIS last accepted (ledger_hashes),
-- in dependency order (phase 1 categories, 2 lineItems, 3 results). `parent_id` is what an object
-- needs the SIS to hold first. Inputs: obj_categories, obj_line_items, obj_results, ledger_hashes.
CREATE OR REPLACE TEMP TABLE pending AS
SELECT 1 AS phase, 'category' AS kind, o.sourced_id, o.payload, o.payload_hash,
       NULL::VARCHAR AS sis_course_id, NULL::VARCHAR AS line_item_id, NULL::VARCHAR AS parent_id
FROM obj_categories o LEFT JOIN ledger_hashes l USING (sourced_id)
WHERE l.accepted_hash IS DISTINCT FROM o.payload_hash
UNION ALL
SELECT 2, o.kind, o.sourced_id, o.payload, o.payload_hash, o.sis_course_id, NULL, o.category_id
FROM obj_line_items o LEFT JOIN ledger_hashes l USING (sourced_id)
WHERE l.accepted_hash IS DISTINCT FROM o.payload_hash
UNION ALL
SELECT 3, 'result', o.sourced_id, o.payload, o.payload_hash, o.sis_course_id, o.line_item_id, o.line_item_id
FROM obj_results o LEFT JOIN ledger_hashes l USING (sourced_id)
WHERE l.accepted_hash IS DISTINCT FROM o.payload_hash;

-- Assignment lineItems this pipeline wrote for the gathered courses that Canvas no longer has (deleted,
-- unpublished or unmarked for the SIS). Input: ledger_line_items (kind lineItem, of these courses).
CREATE OR REPLACE TEMP TABLE orphan_line_items AS
SELECT l.sourced_id, l.sis_course_id
FROM ledger_line_items l
WHERE l.sourced_id NOT IN (SELECT sourced_id FROM obj_line_items);
