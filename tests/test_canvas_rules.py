"""Canvas SIS importer rules: file type detection, CSV parsing like Ruby's CSV, and each row rule with
Canvas's exact message text."""

from __future__ import annotations

import io
import zipfile

import pytest

from pipeline.canvas_rules import (
    ExistingIds, detect_file_type, parse_import, read_zip, rejected_rows, validate_import,
)

ACCOUNTS = "account_id,parent_account_id,name,status\n"
TERMS = "term_id,name,status,start_date,end_date\n"
COURSES = "course_id,short_name,long_name,account_id,term_id,status\n"
SECTIONS = "section_id,course_id,name,status,start_date,end_date\n"
USERS = "user_id,login_id,first_name,last_name,email,status\n"
ENROLLMENTS = "course_id,section_id,user_id,role,status\n"
OBSERVERS = "observer_id,student_id,status\n"

EXISTING = ExistingIds(
    accounts={"A1"}, terms={"T1"}, courses={"C1", "C2"}, sections={"S1", "S2"}, users={"U1", "U2"},
    section_course={"S1": "C1", "S2": "C2"},
)


def messages(files: dict[str, str | bytes], existing: ExistingIds | None = EXISTING) -> list[tuple]:
    encoded = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    return [(v.file, v.row, v.record_id, v.message, v.severity) for v in validate_import(encoded, existing)]


@pytest.mark.parametrize(("header", "expected"), [
    (["account_id", "parent_account_id", "name", "status"], "account"),
    (["Account_ID", "PARENT_ACCOUNT_ID", "name", "status"], "account"),  # headers are downcased
    (["account_id", "name", "status"], None),  # without parent_account_id it is not an accounts file
    (["term_id", "name", "status"], "term"),
    (["course_id", "short_name", "long_name", "status"], "course"),
    (["abstract_course_id", "short_name", "long_name", "status"], "abstract_course"),
    (["section_id", "course_id", "name", "status"], "section"),
    (["section_id", "course_id", "name", "status", "user_id"], "section"),  # section wins over enrollment
    (["xlist_course_id", "section_id", "status"], "xlist"),
    (["user_id", "login_id", "status"], "user"),
    (["user_id", "login_id", "existing_user_id"], "login"),
    (["course_id", "user_id", "role", "status"], "enrollment"),
    (["section_id", "user_integration_id", "role", "status"], "enrollment"),
    (["user_id", "account_id", "role", "status"], "admin"),
    (["group_id", "name", "status"], "group"),
    (["observer_id", "student_id", "status"], "user_observer"),
    (["old_id", "new_id", "type"], "change_sis_id"),
    (["id", "whatever"], None),
    (["", "course_id", "short_name", ""], "course"),  # empty header cells are allowed
])
def test_detect_file_type(header, expected):
    assert detect_file_type(header) == expected


def test_file_level_failures_and_warnings():
    found = messages({
        "bad_utf8.csv": COURSES.encode() + b"C9,\xff\xfe,Name,,,active\n",
        "unclosed.csv": COURSES + 'C9,short,"never closed,,,active\n',
        "stray_quote.csv": COURSES + 'C9,sh"ort,Name,,,active\n',
        "after_quote.csv": COURSES + 'C9,"short"x,Name,,,active\n',
        "unknown.csv": "course_id,randomness,smelly\ntest_1,TC 101,Test\n",
        "notes.txt": "not a csv",
        "empty.csv": b"",
    })
    assert sorted(found) == sorted([
        ("after_quote.csv", None, None, "Malformed CSV", "error"),
        ("bad_utf8.csv", None, None, "Invalid UTF-8", "error"),
        ("notes.txt", None, None, "Skipping unknown file type", "warning"),
        ("stray_quote.csv", None, None, "Malformed CSV", "error"),
        ("unclosed.csv", None, None, "Malformed CSV", "error"),
        ("unknown.csv", None, None, "Couldn't find Canvas CSV import headers", "error"),
    ])
    assert parse_import({"x.csv": COURSES.encode() + b'C9,"bad\n'}).failed


def test_hostile_but_valid_values_parse_like_canvas():
    text = ("\ufeffCourse_ID,Short_Name,Long_Name,account_id,term_id,status\r\n"
            '  C1  ,"Math, ""Advanced""","Line one\nline two",,,published\r\n'
            "\r\n"
            "C2,  ,x,,,active\r\n")
    parsed = parse_import({"courses.csv": text.encode()})
    assert not parsed.file_violations
    rows = list(parsed.files[0].rows())
    assert rows[0] == (2, {"course_id": "C1", "short_name": 'Math, "Advanced"', "long_name": "Line one\nline two",
                           "account_id": None, "term_id": None, "status": "published"})
    # the blank line is skipped and not counted; whitespace-only values become nil
    assert rows[1][0] == 3 and rows[1][1]["short_name"] is None
    assert messages({"courses.csv": text}) == [("courses.csv", 3, "C2", "No short_name given for course C2", "error")]


@pytest.mark.parametrize(("files", "expected"), [
    ({"a.csv": ACCOUNTS + ",,Name,active\n"}, (None, "No account_id given for an account")),
    ({"a.csv": ACCOUNTS + "A9,AX,Name,active\n"}, ("A9", "Parent account didn't exist for A9")),
    ({"a.csv": ACCOUNTS + "A9,,,active\n"}, ("A9", "No name given for account A9, skipping")),
    ({"a.csv": ACCOUNTS + "A9,,Name,gone\n"}, ("A9", 'Improper status "gone" for account A9, skipping')),
    ({"t.csv": TERMS + ",Fall,active,,\n"}, (None, "No term_id given for a term")),
    ({"t.csv": TERMS + "T9,Fall,closed,,\n"}, ("T9", 'Improper status "closed" for term T9')),
    ({"t.csv": TERMS + "T9,,active,,\n"}, ("T9", "No name given for term T9")),
    ({"t.csv": "term_id,name,status,date_override_enrollment_type\nT9,,active,StudentEnrollment\n"},
     ("T9", "Cannot set date override on non-existent term")),
    ({"t.csv": "term_id,name,status,date_override_enrollment_type\nT1,,active,Student\n"},
     ("T1", "Invalid date_override_enrollment_type")),
    ({"c.csv": COURSES + ",s,l,,,active\n"}, (None, "No course_id given for a course")),
    ({"c.csv": COURSES + "C9,,l,,,active\n"}, ("C9", "No short_name given for course C9")),
    ({"c.csv": COURSES + "C9,s,,,,active\n"}, ("C9", "No long_name given for course C9")),
    ({"c.csv": COURSES + "C9,s,l,,,inactive\n"}, ("C9", 'Improper status "inactive" for course C9')),
    ({"c.csv": COURSES + "C9,s,l,AX,,active\n"}, ("C9", 'Account not found "AX" for course C9')),
    ({"c.csv": "course_id,short_name,long_name,status,course_format\nC9,s,l,active,hybrid\n"},
     ("C9", 'Invalid course_format "hybrid" for course C9')),
    ({"c.csv": "course_id,short_name,long_name,status,grade_passback_setting\nC9,s,l,active,daily\n"},
     ("C9", 'Invalid grade_passback_setting "daily" for course C9')),
    ({"s.csv": SECTIONS + ",C1,Name,active,,\n"}, (None, "No section_id given for a section in course C1")),
    ({"s.csv": SECTIONS + "S9,,Name,active,,\n"}, ("S9", "No course_id given for a section S9")),
    ({"s.csv": SECTIONS + "S9,C1,,active,,\n"}, ("S9", "No name given for section S9 in course C1")),
    ({"s.csv": SECTIONS + "S9,C1,Name,open,,\n"}, ("S9", 'Improper status "open" for section S9 in course C1')),
    ({"s.csv": SECTIONS + "S9,CX,Name,active,,\n"}, ("S9", "Section S9 references course CX which doesn't exist")),
    ({"x.csv": "xlist_course_id,section_id,status\nX1,S1,activeX\n"}, ("S1", 'Improper status "activeX" for a cross-listing')),
    ({"x.csv": "xlist_course_id,section_id,status\nX1,SX,active\n"}, ("SX", "A cross-listing referenced a non-existent section SX")),
    ({"u.csv": USERS + ",l,F,L,,active\n"}, (None, "No user_id given for a user")),
    ({"u.csv": USERS + "U9,,F,L,,active\n"}, ("U9", "No login_id given for user U9")),
    ({"u.csv": USERS + "U9,l9,F,L,,\n"}, ("U9", "No status given for user U9")),
    ({"u.csv": USERS + "U9,l9,F,L,,gone\n"}, ("U9", "Improper status for user U9")),
    ({"e.csv": ENROLLMENTS + ",,U1,student,active\n"}, ("U1/student", "No course_id or section_id given for an enrollment")),
    ({"e.csv": ENROLLMENTS + "C1,S1,,student,active\n"}, ("C1/student", "No user_id given for an enrollment")),
    ({"e.csv": ENROLLMENTS + "C1,S1,U1,student,dropped\n"}, ("C1/U1/student", 'Improper status "dropped" for an enrollment')),
    ({"e.csv": ENROLLMENTS + "C1,S1,UX,student,active\n"},
     ("C1/UX/student", "User not found for enrollment (User ID: UX, Course ID: C1, Section ID: S1)")),
    ({"e.csv": ENROLLMENTS + "CX,SX,U1,student,active\n"},
     ("CX/U1/student", "Neither course nor section existed for user enrollment (Course ID: CX, Section ID: SX, User ID: U1)")),
    ({"e.csv": ENROLLMENTS + "C1,SX,U1,student,active\n"}, ("C1/U1/student", "An enrollment referenced a non-existent section SX")),
    ({"e.csv": ENROLLMENTS + "CX,S1,U1,student,active\n"}, ("CX/U1/student", "An enrollment referenced a non-existent course CX")),
    ({"e.csv": ENROLLMENTS + "C1,S2,U1,student,active\n"},
     ("C1/U1/student", "An enrollment listed a section (S2) and a course (C1) that are unrelated for user (U1)")),
    ({"e.csv": ENROLLMENTS + "C1,S1,U1,teacherx,active\n"}, ("C1/U1/teacherx", 'Improper role "teacherx" for an enrollment')),
    ({"e.csv": "course_id,user_id,role,status,associated_user_id\nC1,U1,observer,active,UX\n"},
     ("C1/U1/observer", "An enrollment referenced a non-existent associated user UX")),
    ({"o.csv": OBSERVERS + ",U1,active\n"}, ("U1", "No observer_id given for a user observer")),
    ({"o.csv": OBSERVERS + "U1,,active\n"}, ("U1", "No user_id given for a user observer")),
    ({"o.csv": OBSERVERS + "U1,U1,active\n"}, ("U1/U1", "Can't observe yourself user U1")),
    ({"o.csv": OBSERVERS + "U1,U2,activeX\n"}, ("U1/U2", 'Improper status "activeX" for a user_observer')),
    ({"o.csv": OBSERVERS + "UX,U2,active\n"}, ("UX/U2", "An observer referenced a non-existent user UX")),
    ({"o.csv": OBSERVERS + "U1,UX,active\n"}, ("U1/UX", "A student referenced a non-existent user UX")),
])
def test_row_rules_use_canvas_messages(files, expected):
    found = messages(files)
    assert [(record_id, message) for _, _, record_id, message, _ in found] == [expected]
    assert found[0][1] == 2 and found[0][4] == "error"


def test_status_and_role_regexes_are_anchored_like_canvas():
    # Canvas anchors only at the start for courses, sections, enrollments, users and the student role.
    assert messages({
        "c.csv": COURSES + "C9,s,l,,,Published-ish\n",
        "s.csv": SECTIONS + "S9,C9,Name,ACTIVE,,\n",
        "u.csv": USERS + "U9,l9,F,L,,suspended_for_now\n",
        "e.csv": ENROLLMENTS + "C9,S9,U9,StudentX,inactive\n",
    }) == []


def test_dates_warn_but_keep_the_row():
    found = messages({
        "t.csv": TERMS + "T9,Fall,active,2026-08-01T00:00:00Z,not a date\nT8,Spring,active,<delete>,\n",
        "c.csv": "course_id,short_name,long_name,status,start_date,end_date\n"
                 "C9,s,l,active,2013-1-03 00:00:00,2013-05-03 00:00:00-06:00\nC8,s,l,active,<delete>,31/12/2026\n",
    })
    assert found == [
        ("t.csv", 2, "T9", "Bad date format for term T9", "warning"),
        ("t.csv", 3, "T8", "Bad date format for term T8", "warning"),  # <delete> is for courses only
        ("c.csv", 3, "C8", "Bad date format for course C8", "warning"),
    ]


def test_references_follow_processing_order_and_rejected_rows_define_nothing():
    found = messages({
        "accounts.csv": ACCOUNTS + "A3,A2,Child first,active\nA2,,Parent,active\n",
        "courses.csv": COURSES + "C9,s,l,A2,T1,bogus\nC8,s,l,A3,T1,active\n",
        "sections.csv": SECTIONS + "S9,C9,Name,active,,\n",
        "users.csv": USERS + "U9,l9,F,L,,active\n",
        # files are processed by type, not name: enrollments come after users whatever the zip order
        "a_enrollments.csv": ENROLLMENTS + "C9,S9,U9,student,active\n,S9,U9,student,active\n",
    }, existing=None)
    assert found == [
        ("accounts.csv", 2, "A3", "Parent account didn't exist for A3", "error"),
        ("courses.csv", 2, "C9", 'Improper status "bogus" for course C9', "error"),
        ("courses.csv", 3, "C8", 'Account not found "A3" for course C8', "error"),
        ("sections.csv", 2, "S9", "Section S9 references course C9 which doesn't exist", "error"),
        ("a_enrollments.csv", 2, "C9/U9/student",
         "Neither course nor section existed for user enrollment (Course ID: C9, Section ID: S9, User ID: U9)", "error"),
        ("a_enrollments.csv", 3, "S9/U9/student",
         "Neither course nor section existed for user enrollment (Course ID: , Section ID: S9, User ID: U9)", "error"),
    ]


def test_existing_ids_let_one_data_set_refer_to_another():
    term_files = {"sections.csv": SECTIONS + "S9,C1,Name,active,,\n",
                  "enrollments.csv": ENROLLMENTS + "C1,S9,U2,teacher,active\nC2,S2,U1,ta,active\n"}
    assert messages(term_files) == []
    assert [m[3] for m in messages(term_files, existing=None)] == [
        "Section S9 references course C1 which doesn't exist",
        "User not found for enrollment (User ID: U2, Course ID: C1, Section ID: S9)",
        "User not found for enrollment (User ID: U1, Course ID: C2, Section ID: S2)",
    ]


def test_users_logins_and_integration_ids_are_claimed_once():
    found = messages({"u.csv": "user_id,login_id,integration_id,status\nU7,Sam,I7,active\nU8,sam,I8,active\n"
                                "U9,l9,I7,active\n"})
    assert [m[3] for m in found] == [
        "An existing Canvas user with the SIS ID U7 has already claimed U8's user_id requested login information, skipping",
        "An existing Canvas user with the SIS ID U7 has already claimed U9's requested integration_id, skipping",
    ]
    # an enrollment by user_integration_id resolves through users.csv
    assert messages({"u.csv": "user_id,login_id,integration_id,status\nU7,l7,I7,active\n",
                     "e.csv": "course_id,user_integration_id,role,status\nC1,I7,student,active\n"}) == []


def test_deleted_user_cannot_be_enrolled():
    found = messages({"u.csv": USERS + "U9,l9,F,L,,deleted\n", "e.csv": ENROLLMENTS + "C1,S1,U9,student,active\n"
                                                                                       "C1,S1,U9,teacher,deleted\n"})
    assert [m[3] for m in found] == ["Attempted enrolling of deleted user U9 in course C1"]


def test_duplicates_are_a_separate_precheck_rule():
    found = validate_import({
        "courses.csv": (COURSES + "C1,a,b,,,active\nC7,a,b,,,active\nC1,c,d,,,active\n").encode(),
        "enrollments.csv": (ENROLLMENTS + "C1,S1,U1,student,active\nC1,S1,U1,student,deleted\n").encode(),
    }, EXISTING)
    duplicates = [(v.file, v.row, v.record_id, v.message, v.source) for v in found]
    assert duplicates == [
        ("courses.csv", 4, "C1", 'Duplicate course_id "C1" in courses.csv (rows 2 and 4)', "precheck"),
        ("enrollments.csv", 3, "C1/S1/U1/student",
         'Duplicate enrollment (course_id "C1", section_id "S1", user_id "U1", role "student") in enrollments.csv '
         "(rows 2 and 3)", "precheck"),
    ]
    assert rejected_rows(found) == set()  # Canvas itself would import both rows


def test_unknown_term_is_a_warning_because_canvas_ignores_it():
    found = validate_import({"courses.csv": (COURSES + "C9,s,l,,TX,active\n").encode()}, EXISTING)
    assert [(v.message, v.severity, v.source) for v in found] == [
        ('Term not found "TX" for course C9: Canvas ignores it and puts the course in the default term',
         "warning", "precheck")]


def test_read_zip_walks_folders_and_ignores_junk():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("district/users.csv", USERS)
        archive.writestr("__MACOSX/district/._users.csv", "junk")
        archive.writestr(".DS_Store", "junk")
        archive.writestr("Desktop DB", "junk")
    assert list(read_zip(buffer.getvalue())) == ["district/users.csv"]
