-- Candidates for carrying forward: last night's version of every record rejected tonight (by a
-- record rule while streaming, in `rejected_ids`, or by a snapshot rule, in `problems`) whose
-- sourcedId tonight's file does not otherwise hold. Not a record the SIS sends as deleted tonight
-- (tobedeleted, or 1.0's inactive): last night's live version would bring back, night after night,
-- a student the SIS removed; left out, it is dropped like any record the SIS stops sending. A rejected later copy of a duplicate is not a
-- candidate: its first copy is kept. row_number is the row in last night's file, so the rows are
-- copied from there as stored (types untouched) and keep that file's order.
-- {columns} are the schema's columns; the candidates are only the rejected records, so the table
-- stays small on a normal night (and spills with the connection's memory limit on a bad one).
CREATE OR REPLACE TEMP TABLE carried AS
WITH rejected AS (
    SELECT sourcedId, status FROM rejected_ids WHERE sourcedId IS NOT NULL
    UNION
    SELECT tonight.sourcedId, tonight.status
    FROM read_parquet($staging, file_row_number = true) AS tonight
    SEMI JOIN problems ON problems.row_number = tonight.file_row_number
),
alive AS (
    SELECT sourcedId FROM rejected
    GROUP BY sourcedId
    HAVING NOT bool_or(coalesce(lower(trim(status)) IN ('tobedeleted', 'inactive'), false))
),
kept AS (
    SELECT sourcedId
    FROM read_parquet($staging, file_row_number = true)
    WHERE file_row_number NOT IN (SELECT row_number FROM problems)
)
SELECT previous.file_row_number AS row_number, {columns}
FROM read_parquet($previous, file_row_number = true) AS previous
SEMI JOIN alive ON previous.sourcedId = alive.sourcedId
ANTI JOIN kept ON previous.sourcedId = kept.sourcedId
