-- The reject rows (schema REJECTS) of the snapshot rules staged in {problems}, each with its record
-- as stored ({rows}: the staged file, or the carried-forward candidates), personal fields left out
-- ({record} builds that JSON).
SELECT $entity AS entity, p.sourcedId, p.rule, p.field, p.message, {record} AS record
FROM {problems} AS p
JOIN {rows} AS s ON s.row_number = p.row_number
ORDER BY p.row_number, p.rule, p.field
