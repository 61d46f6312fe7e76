-- Classes whose sessions are not (and roll up to no) MAPPING_TERM_TYPES session: in no term's files.
SELECT count(*) FROM rb_class_without_term
