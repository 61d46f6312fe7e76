-- The enrollments of one term (getvariable('term_id')), computed once per term step: the
-- enrollments file and its skip counts both read them.
CREATE TABLE rb_term_enrollment AS
SELECT * FROM rb_enrollment WHERE term_id = getvariable('term_id');
