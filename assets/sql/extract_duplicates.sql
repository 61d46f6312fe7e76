-- Records whose sourcedId already appeared earlier in the same feed: the first one is kept, since
-- pages arrive in offset order and a later copy is usually paging drift or a provider bug.
-- Repeated ids are found by grouping first (a hash aggregate), and only their rows joined back: a
-- window over every row sorts the whole file, which costs twice as much when, as usual, none repeat.
-- The snapshot holds no null sourcedId (the required rule rejects those before it is written).
WITH repeated AS (
    SELECT sourcedId, min(file_row_number) AS first_row
    FROM read_parquet($staging, file_row_number = true)
    GROUP BY sourcedId
    HAVING count(*) > 1
)
SELECT s.file_row_number AS row_number, s.sourcedId, 'duplicate_sourcedId' AS rule, 'sourcedId' AS field,
       'sourcedId ' || s.sourcedId || ' already appeared at record ' || (r.first_row + 1) || '; the first one is kept' AS message
FROM read_parquet($staging, file_row_number = true) AS s
JOIN repeated AS r ON s.sourcedId = r.sourcedId
WHERE s.file_row_number > r.first_row
