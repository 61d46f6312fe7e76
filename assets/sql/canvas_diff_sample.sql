-- The first $per_change records of each kind of change, in record-key order, for the masked sample.
SELECT change, row_json
FROM (
    SELECT change, row_key, row_json,
           row_number() OVER (PARTITION BY change ORDER BY row_key) AS position
    FROM changes
    WHERE change <> 'unchanged'
)
WHERE position <= $per_change
ORDER BY change, row_key
