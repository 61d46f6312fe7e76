-- Records that point at a record the same snapshot does not hold (an anti-join; one row per missing
-- reference). {rows} gives the checked records with their row_number (tonight's staged file, or the
-- last-night versions about to be carried forward); {reference} is the reference column, unnested
-- when it holds a list.
SELECT refs.row_number, refs.sourcedId, 'missing_reference' AS rule, {field} AS field,
       {note}{field} || ' ' || refs.ref || ' is not in ' || {target} AS message
FROM (
    SELECT row_number, sourcedId, {reference} AS ref
    FROM {rows}
) AS refs
ANTI JOIN read_parquet({target_path}) AS referenced ON refs.ref = referenced.sourcedId
WHERE refs.ref IS NOT NULL
