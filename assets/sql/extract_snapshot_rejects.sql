-- The reject rows (schema REJECTS) of the snapshot rules staged in `problems`, each with its record
-- as stored, personal fields left out ({record} builds that JSON).
SELECT $entity AS entity, p.sourcedId, p.rule, p.field, p.message, {record} AS record
FROM problems AS p
JOIN read_parquet($staging, file_row_number = true) AS s ON s.file_row_number = p.row_number
ORDER BY p.row_number, p.rule, p.field
