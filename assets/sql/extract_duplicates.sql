-- Records whose sourcedId already appeared earlier in the same feed: the first one is kept, since
-- pages arrive in offset order and a later copy is usually paging drift or a provider bug.
SELECT row_number, sourcedId, 'duplicate_sourcedId' AS rule, 'sourcedId' AS field,
       'sourcedId ' || sourcedId || ' already appeared at record ' || (first_row + 1) || '; the first one is kept' AS message
FROM (
    SELECT file_row_number AS row_number, sourcedId,
           min(file_row_number) OVER (PARTITION BY sourcedId) AS first_row
    FROM read_parquet($staging, file_row_number = true)
)
WHERE row_number > first_row
