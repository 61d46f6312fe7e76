-- Every record of one SIS-import CSV classified against the last successfully imported copy:
-- created, changed, deleted (now absent, which Canvas diffing drops, newly given a deleted status, or
-- newly given a deactivating one: a user turning suspended, an enrollment inactive) or unchanged.
-- Records are matched on Canvas's identifying columns ($key_columns); only changed records keep their
-- values, for the masked sample.
CREATE OR REPLACE TEMP TABLE changes AS
WITH sides AS (
    SELECT 'previous' AS side, to_json(p) AS row_json
    FROM read_csv($previous, header = true, all_varchar = true) AS p
    WHERE $has_previous
    UNION ALL
    SELECT 'current' AS side, to_json(c) AS row_json
    FROM read_csv($current, header = true, all_varchar = true) AS c
), keyed AS (
    SELECT side,
           array_to_string(list_transform($key_columns, lambda k: coalesce(row_json ->> k, '')), '|') AS row_key,
           lower(coalesce(row_json ->> 'status', '')) AS status,
           md5(row_json::VARCHAR) AS row_hash,
           row_json
    FROM sides
), previous_keyed AS (
    SELECT * EXCLUDE (side) FROM keyed WHERE side = 'previous'
), current_keyed AS (
    SELECT * EXCLUDE (side) FROM keyed WHERE side = 'current'
), classified AS (
    SELECT coalesce(c.row_key, p.row_key) AS row_key,
           c.row_key IS NOT NULL AS in_current,
           p.row_key IS NOT NULL AND NOT list_contains($deleted_statuses, p.status) AS previously_live,
           CASE
               WHEN p.row_key IS NULL THEN 'created'
               WHEN list_contains($deleted_statuses, p.status) THEN
                   CASE WHEN c.row_key IS NULL OR p.row_hash = c.row_hash THEN 'unchanged' ELSE 'changed' END
               WHEN c.row_key IS NULL OR list_contains($deleted_statuses, c.status) THEN 'deleted'
               WHEN list_contains($deactivated_statuses, c.status)
                    AND NOT list_contains($deactivated_statuses, p.status) THEN 'deleted'
               WHEN p.row_hash <> c.row_hash THEN 'changed'
               ELSE 'unchanged'
           END AS change,
           coalesce(c.row_json, p.row_json) AS row_json
    FROM previous_keyed AS p
    FULL OUTER JOIN current_keyed AS c ON p.row_key = c.row_key
)
SELECT row_key, in_current, previously_live, change, CASE WHEN change <> 'unchanged' THEN row_json END AS row_json
FROM classified
