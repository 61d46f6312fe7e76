-- Records that point at a record the same snapshot does not hold (an anti-join; one row per missing
-- reference). {reference} is the reference column, unnested when it holds a list.
SELECT refs.row_number, refs.sourcedId, 'missing_reference' AS rule, {field} AS field,
       {field} || ' ' || refs.ref || ' is not in ' || {target} AS message
FROM (
    SELECT file_row_number AS row_number, sourcedId, {reference} AS ref
    FROM read_parquet($staging, file_row_number = true)
) AS refs
ANTI JOIN read_parquet({target_path}) AS referenced ON refs.ref = referenced.sourcedId
WHERE refs.ref IS NOT NULL
