"""A deterministic synthetic school district, computed record by record from (students, seed).

Nothing is materialised: record `i` of any entity is a pure function of `i`, the student count and the
seed, so a 500k-student district (about 4M enrollments) costs a few kilobytes of per-school counters.

Layout (every number follows from `students`):
- one district org, then schools cycling elementary (KG-05), middle (06-08), high (09-12), elementary,
  about one school per 600 students (at least one of each kind);
- student `s` attends school `s % n_schools`; within the school, grade and cohort position follow from
  `s // n_schools`; cohorts are split into sections of 25;
- the 2026-2027 school year (`schoolYear`), two `semester`s, four `gradingPeriod`s (children of the
  semesters); elementary/middle classes are mostly year-long, high-school classes are per semester;
- one course per (school, grade, subject); one class per (school, grade, slot, section);
- one teacher per five classes of a school; one aide per twenty classes, enrolled as a non-primary
  teacher (1.1 has no "aide" enrollment role) in every fifth class; a principal per school and a
  district administrator; one or two guardians per student, linked both ways by `agents`;
- hard cases on purpose: accented names, apostrophes, "García, Jr.", a nickname in double quotes,
  `tobedeleted` records, disabled users, a teacher without an email.
"""

from __future__ import annotations

import bisect
import functools
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipeline.demo.source import Selection, guid_ref

GENERATED_AT = "2026-07-01T12:00:00.000Z"  # every generated record's dateLastModified (fixed: byte-identical output)
SECTION_SIZE = 25
CLASSES_PER_TEACHER = 5
CLASSES_PER_AIDE = 20
AIDED_CLASS_EVERY = 5
STUDENTS_PER_SCHOOL = 600
ID_WIDTH = 7
_ID_FORMAT = f"%s-%0{ID_WIDTH}d"  # `prefix-0000042`; %-formatting with the width fixed is the fastest form

KIND_CYCLE = ("elementary", "middle", "high", "elementary")
GRADES = {
    "elementary": ("KG", "01", "02", "03", "04", "05"),
    "middle": ("06", "07", "08"),
    "high": ("09", "10", "11", "12"),
}
# (subject, term key, classType) per class slot; a student has one class per slot.
SLOTS = {
    "elementary": (
        ("Homeroom", "year", "homeroom"),
        ("Reading", "year", "scheduled"),
        ("Mathematics", "year", "scheduled"),
        ("Science", "year", "scheduled"),
        ("Art", "fall", "scheduled"),
        ("Music", "spring", "scheduled"),
    ),
    "middle": (
        ("Homeroom", "year", "homeroom"),
        ("English", "year", "scheduled"),
        ("Mathematics", "year", "scheduled"),
        ("Science", "year", "scheduled"),
        ("Social Studies", "year", "scheduled"),
        ("Music", "year", "scheduled"),
        ("Physical Education", "fall", "scheduled"),
        ("Health", "spring", "scheduled"),
    ),
    "high": tuple(
        (subject, term, "scheduled")
        for subject in ("English", "Mathematics", "Science", "History", "Spanish")
        for term in ("fall", "spring")
    ),
}
SUBJECT_CODES = {
    "Homeroom": "22001", "Reading": "51035", "Mathematics": "52034", "Science": "53234", "Art": "55034",
    "Music": "55036", "English": "01001", "Social Studies": "54436", "Physical Education": "58034",
    "Health": "58036", "History": "04101", "Spanish": "06101",
}

# academicSessions: (id, title, type, start, end, parent index, child indexes)
SESSIONS = (
    ("as-2027", "2026-2027", "schoolYear", "2026-08-17", "2027-06-04", None, (1, 2)),
    ("as-2027-fall", "Fall Semester 2026", "semester", "2026-08-17", "2027-01-15", 0, (3, 4)),
    ("as-2027-spring", "Spring Semester 2027", "semester", "2027-01-19", "2027-06-04", 0, (5, 6)),
    ("as-2027-q1", "Quarter 1", "gradingPeriod", "2026-08-17", "2026-10-23", 1, ()),
    ("as-2027-q2", "Quarter 2", "gradingPeriod", "2026-10-26", "2027-01-15", 1, ()),
    ("as-2027-q3", "Quarter 3", "gradingPeriod", "2027-01-19", "2027-03-26", 2, ()),
    ("as-2027-q4", "Quarter 4", "gradingPeriod", "2027-03-29", "2027-06-04", 2, ()),
)
SCHOOL_YEAR = "2027"
TERM_SESSION = {"year": 0, "fall": 1, "spring": 2}
CATEGORIES = (("cat-homework", "Homework"), ("cat-quiz", "Quizzes"), ("cat-test", "Tests"), ("cat-project", "Projects"))

GIVEN_NAMES = (
    "Zoë", "José", "Aoife", "Chloé", "Renée", "Siobhán", "Björn", "Noah", "Liam", "Olivia", "Emma", "Ava",
    "Mateo", "Sofía", "Léa", "Ethan", "Mia", "Lucas", "Amara", "Jürgen", "Ngozi", "Hannah", "Dmitri", "Ana",
    "Kai", "Isabella", "Yusuf", "Mei", "François", "Ines", "D'Andre", "Maëlle",
)
FAMILY_NAMES = (
    "O'Brien", "García", "Müller", "D'Angelo", "Núñez", "Smith-Jones", "Łukasiewicz", "Nguyễn", "Johnson",
    "Williams", "Brown", "Martínez", "Kowalski", "O'Connor", "Dubois", "Kim", "Patel", "Okafor", "Rossi",
    "Andersson", "López", "Schäfer", "McAllister", "Haddad", "Yamamoto", "Fitzgerald", "Ibáñez", "Chen",
)
SCHOOL_PLACES = (
    "Maple Grove", "O'Keeffe", "Peña", "Riverside", "Lincoln", "Cedar Ridge", "Sacagawea", "Hillcrest",
    "Lakeview", "Brontë", "Washington", "Oakwood", "Desert Sky", "Kennedy", "Pine Hollow", "Evergreen",
)
KIND_SUFFIX = {"elementary": "Elementary School", "middle": "Middle School", "high": "High School"}
DOMAIN = "riverside-usd.example.org"

# Deliberate hard cases by index.
SPECIAL_STUDENT_NAMES = {0: ("Zoë", "O'Brien", None), 1: ("Marcus", "García, Jr.", None), 2: ('Katherine "Kate"', "Núñez", "Ann")}
TEACHER_WITHOUT_EMAIL = 1


def _mix(seed: int, salt: int, index: int) -> int:
    """splitmix64: a cheap, well-spread deterministic hash of (seed, salt, index)."""
    z = (seed * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9 + index + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


# Names come from short fixed lists, so a few hundred distinct inputs: this is what makes usernames
# cheap to generate for millions of users (Unicode normalisation was 40 % of a user record's cost).
@functools.lru_cache(maxsize=4096)
def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("ł", "l").replace("Ł", "L"))
    return "".join(ch for ch in decomposed if ch.isascii() and ch.isalnum()).lower()


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class School:
    index: int  # 0-based among schools (org index is index + 1)
    kind: str
    students: int
    cohorts: tuple[int, ...]  # students per grade
    sections: tuple[int, ...]  # sections per grade
    grade_class_offsets: tuple[int, ...]  # first class (within the school) of each grade
    classes: int

    @property
    def sourced_id(self) -> str:
        return f"org-sch-{self.index + 1:04d}"


class UserBlock:
    """Users are stored as consecutive blocks; the id prefix names the block."""

    ORDER = ("administrator", "teacher", "aide", "student", "guardian")
    PREFIX = {"administrator": "adm", "teacher": "tch", "aide": "aid", "student": "stu", "guardian": "grd"}


class District:
    """The synthetic district: a `RosterSource` (see `pipeline.demo.source`)."""

    def __init__(self, students: int = 300, seed: int = 1):
        if students < 1:
            raise ValueError(f"a district needs at least one student, got {students}")
        self.students = students
        self.seed = seed
        self.fingerprint = f"district(students={students}, seed={seed})"
        # Every generated record has this value: a dateLastModified filter needs no scan.
        self.uniform_fields = {"dateLastModified": GENERATED_AT}
        self.n_schools = max(3, round(students / STUDENTS_PER_SCHOOL))
        self.schools = tuple(self._school(i) for i in range(self.n_schools))
        self._class_offsets = self._prefix(s.classes for s in self.schools)
        self._course_offsets = self._prefix(len(GRADES[s.kind]) * len(self._subjects(s.kind)) for s in self.schools)
        self._teacher_offsets = self._prefix(math.ceil(s.classes / CLASSES_PER_TEACHER) for s in self.schools)
        self._aide_offsets = self._prefix(math.ceil(s.classes / CLASSES_PER_AIDE) for s in self.schools)
        self._staff_enrollment_offsets = self._prefix(
            s.classes + math.ceil(s.classes / AIDED_CLASS_EVERY) for s in self.schools
        )
        # Student enrollments: per cycle of n_schools consecutive students, school k contributes its slot count.
        self._slot_offsets = self._prefix(len(SLOTS[s.kind]) for s in self.schools)
        cycle = self._slot_offsets[-1]
        self._student_enrollments = (students // self.n_schools) * cycle + self._slot_offsets[students % self.n_schools]
        n_guardians = (students // 3) * 5 + (0, 2, 4)[students % 3]
        self._user_blocks = self._prefix(
            (
                1 + self.n_schools,
                self._teacher_offsets[-1],
                self._aide_offsets[-1],
                students,
                n_guardians,
            )
        )
        self._session_index = {s[0]: i for i, s in enumerate(SESSIONS)}
        self._category_index = {c[0]: i for i, c in enumerate(CATEGORIES)}

    # --- layout -------------------------------------------------------------------------------------
    @staticmethod
    def _prefix(values) -> tuple[int, ...]:
        out = [0]
        for v in values:
            out.append(out[-1] + v)
        return tuple(out)

    @staticmethod
    def _subjects(kind: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(subject for subject, _, _ in SLOTS[kind]))

    def _school(self, i: int) -> School:
        kind = KIND_CYCLE[i % len(KIND_CYCLE)]
        n_grades = len(GRADES[kind])
        count = self.students // self.n_schools + (1 if i < self.students % self.n_schools else 0)
        cohorts = tuple(count // n_grades + (1 if g < count % n_grades else 0) for g in range(n_grades))
        sections = tuple(math.ceil(c / SECTION_SIZE) for c in cohorts)
        offsets = self._prefix(len(SLOTS[kind]) * n for n in sections)
        return School(i, kind, count, cohorts, sections, offsets[:-1], offsets[-1])

    def count(self, entity: str) -> int:
        return self._counts.get(entity, 0)

    @cached_property
    def _counts(self) -> dict[str, int]:
        return {
            "orgs": 1 + self.n_schools,
            "academicSessions": len(SESSIONS),
            "courses": self._course_offsets[-1],
            "classes": self._class_offsets[-1],
            "users": self._user_blocks[-1],
            "enrollments": self._student_enrollments + self._staff_enrollment_offsets[-1],
            "demographics": self.students,
            "categories": len(CATEGORIES),
        }

    def _student_place(self, s: int) -> tuple[School, int, int]:
        """(school, grade index, position in cohort) of student `s`."""
        school = self.schools[s % self.n_schools]
        q = s // self.n_schools
        n_grades = len(GRADES[school.kind])
        return school, q % n_grades, q // n_grades

    def _student_of(self, school: School, grade: int, position: int) -> int:
        return school.index + self.n_schools * (grade + len(GRADES[school.kind]) * position)

    def _class_of(self, school: School, grade: int, slot: int, section: int) -> int:
        return self._class_offsets[school.index] + school.grade_class_offsets[grade] + slot * school.sections[grade] + section

    def _class_place(self, c: int) -> tuple[School, int, int, int, int]:
        """(school, grade index, slot, section, position of the class within its school)."""
        school = self.schools[bisect.bisect_right(self._class_offsets, c) - 1]
        p = c - self._class_offsets[school.index]
        grade = bisect.bisect_right(school.grade_class_offsets, p) - 1
        slot, section = divmod(p - school.grade_class_offsets[grade], school.sections[grade])
        return school, grade, slot, section, p

    # --- ids ------------------------------------------------------------------------------------------
    @staticmethod
    def _id(prefix: str, index: int) -> str:
        return _ID_FORMAT % (prefix, index)

    def user_id(self, role: str, index_in_block: int) -> str:
        return self._id(UserBlock.PREFIX[role], index_in_block)

    def student_id(self, s: int) -> str:
        return self.user_id("student", s)

    def class_id(self, c: int) -> str:
        return self._id("cls", c)

    def index_of(self, entity: str, sourced_id: str) -> int | None:
        if entity == "academicSessions":
            return self._session_index.get(sourced_id)
        if entity == "categories":
            return self._category_index.get(sourced_id)
        if entity == "orgs":
            if sourced_id == "org-district":
                return 0
            number = self._parse(sourced_id, "org-sch", 4)
            return number if number is not None and 1 <= number <= self.n_schools else None
        if entity == "users":
            prefix = sourced_id.partition("-")[0]
            role = next((r for r, p in UserBlock.PREFIX.items() if p == prefix), None)
            number = self._parse(sourced_id, prefix, ID_WIDTH)
            if role is None or number is None:
                return None
            block = UserBlock.ORDER.index(role)
            found = self._user_blocks[block] + number
            return found if found < self._user_blocks[block + 1] else None
        prefix = {"courses": "crs", "classes": "cls", "enrollments": "enr", "demographics": "stu"}.get(entity)
        number = self._parse(sourced_id, prefix, ID_WIDTH) if prefix else None
        return number if number is not None and number < self.count(entity) else None

    @staticmethod
    def _parse(sourced_id: str, prefix: str, width: int) -> int | None:
        """The number in `<prefix>-<digits>` (exactly `width` digits), else None."""
        number = sourced_id[len(prefix) + 1 :]
        if sourced_id[: len(prefix) + 1] != prefix + "-" or len(number) != width or not number.isdigit():
            return None
        return int(number)

    # --- selections -------------------------------------------------------------------------------
    def indexes(self, selection: Selection) -> Sequence[int] | None:
        if selection.refs:
            return None
        total = self.count(selection.entity)
        if selection.kinds is None:
            return range(total)
        if selection.entity == "users" and len(selection.kinds) == 1:
            (role,) = selection.kinds
            if role in UserBlock.ORDER:
                block = UserBlock.ORDER.index(role)
                return range(self._user_blocks[block], self._user_blocks[block + 1])
            return range(0)
        if selection.entity == "orgs":
            return [i for i in range(total) if ("district" if i == 0 else "school") in selection.kinds]
        if selection.entity == "academicSessions":
            return [i for i, s in enumerate(SESSIONS) if s[2] in selection.kinds]
        return None

    def enrollment_indexes_for_class(self, class_id: str) -> Sequence[int]:
        c = self.index_of("classes", class_id)
        if c is None:
            return []
        school, grade, slot, section, p = self._class_place(c)
        first = section * SECTION_SIZE
        last = min(first + SECTION_SIZE, school.cohorts[grade])
        cycle = self._slot_offsets[-1]
        found = [
            (s // self.n_schools) * cycle + self._slot_offsets[school.index] + slot
            for s in (self._student_of(school, grade, r) for r in range(first, last))
        ]
        staff = self._student_enrollments + self._staff_enrollment_offsets[school.index]
        found.append(staff + p)
        if p % AIDED_CLASS_EVERY == 0:
            found.append(staff + school.classes + p // AIDED_CLASS_EVERY)
        return sorted(found)

    # --- records ----------------------------------------------------------------------------------
    def record(self, entity: str, index: int, href_base: str) -> dict[str, Any]:
        if not 0 <= index < self.count(entity):
            raise IndexError(f"{entity}[{index}] is outside the district")
        return getattr(self, f"_{entity}")(index, href_base)

    @staticmethod
    def _base(sourced_id: str, status: str = "active") -> dict[str, Any]:
        return {"sourcedId": sourced_id, "status": status, "dateLastModified": GENERATED_AT}

    def _orgs(self, i: int, href: str) -> dict[str, Any]:
        if i == 0:
            rec = self._base("org-district")
            rec.update(name=self._district_name, type="district", identifier="0600000")
            rec["children"] = [guid_ref(href, "orgs", s.sourced_id) for s in self.schools]
            return rec
        school = self.schools[i - 1]
        rec = self._base(school.sourced_id)
        place = SCHOOL_PLACES[(school.index + self.seed) % len(SCHOOL_PLACES)]
        number = school.index // len(SCHOOL_PLACES)
        name = f"{place} {KIND_SUFFIX[school.kind]}" + (f" No. {number + 1}" if number else "")
        rec.update(name=name, type="school", identifier=f"06{school.index + 1:05d}")
        rec["parent"] = guid_ref(href, "orgs", "org-district")
        return rec

    @cached_property
    def _district_name(self) -> str:
        return f"{SCHOOL_PLACES[(self.seed + 3) % len(SCHOOL_PLACES)]} Unified School District"

    def _academicSessions(self, i: int, href: str) -> dict[str, Any]:
        sid, title, kind, start, end, parent, children = SESSIONS[i]
        rec = self._base(sid)
        rec.update(title=title, type=kind, startDate=start, endDate=end)
        if parent is not None:
            rec["parent"] = guid_ref(href, "academicSessions", SESSIONS[parent][0])
        rec["children"] = [guid_ref(href, "academicSessions", SESSIONS[c][0]) for c in children]
        rec["schoolYear"] = SCHOOL_YEAR
        return rec

    def _course_place(self, i: int) -> tuple[School, str, str]:
        school = self.schools[bisect.bisect_right(self._course_offsets, i) - 1]
        subjects = self._subjects(school.kind)
        grade, subject = divmod(i - self._course_offsets[school.index], len(subjects))
        return school, GRADES[school.kind][grade], subjects[subject]

    def _course_id_for(self, school: School, grade: int, subject: str) -> str:
        subjects = self._subjects(school.kind)
        return self._id("crs", self._course_offsets[school.index] + grade * len(subjects) + subjects.index(subject))

    def _courses(self, i: int, href: str) -> dict[str, Any]:
        school, grade, subject = self._course_place(i)
        rec = self._base(self._id("crs", i), "tobedeleted" if i % 97 == 41 else "active")
        label = "Kindergarten" if grade == "KG" else f"Grade {int(grade)}"
        rec.update(title=f"{subject}, {label}", courseCode=f"{_ascii(subject)[:4].upper()}-{grade}-{school.index + 1:04d}")
        rec["schoolYear"] = guid_ref(href, "academicSessions", SESSIONS[0][0])
        rec.update(grades=[grade], subjects=[subject], subjectCodes=[SUBJECT_CODES[subject]])
        rec["org"] = guid_ref(href, "orgs", school.sourced_id)
        return rec

    def _classes(self, i: int, href: str) -> dict[str, Any]:
        school, grade, slot, section, p = self._class_place(i)
        subject, term, class_type = SLOTS[school.kind][slot]
        grade_code = GRADES[school.kind][grade]
        rec = self._base(self.class_id(i))
        title = f"{subject} {grade_code}" + (f" ({term.title()})" if term != "year" else "")
        rec.update(
            title=f"{title} - Section {section + 1}",
            classCode=f"{_ascii(subject)[:4].upper()}{grade_code}-{section + 1:02d}{term[0].upper()}",
            classType=class_type,
            location=f"Room {100 + p % 40}",
            grades=[grade_code],
            subjects=[subject],
        )
        rec["course"] = guid_ref(href, "courses", self._course_id_for(school, grade, subject))
        rec["school"] = guid_ref(href, "orgs", school.sourced_id)
        rec["terms"] = [guid_ref(href, "academicSessions", SESSIONS[TERM_SESSION[term]][0])]
        rec["subjectCodes"] = [SUBJECT_CODES[subject]]
        rec["periods"] = [str(1 + slot % 8)]
        return rec

    # --- users ------------------------------------------------------------------------------------
    def _users(self, i: int, href: str) -> dict[str, Any]:
        block = bisect.bisect_right(self._user_blocks, i) - 1
        role = UserBlock.ORDER[block]
        n = i - self._user_blocks[block]
        return getattr(self, f"_{role}")(n, href)

    def _person(self, role: str, n: int, salt: int) -> tuple[str, str, str | None]:
        if role == "student" and n in SPECIAL_STUDENT_NAMES:
            return SPECIAL_STUDENT_NAMES[n]
        h = _mix(self.seed, salt, n)
        given = GIVEN_NAMES[h % len(GIVEN_NAMES)]
        family = FAMILY_NAMES[(h >> 16) % len(FAMILY_NAMES)]
        middle = GIVEN_NAMES[(h >> 32) % len(GIVEN_NAMES)] if (h >> 48) % 3 == 0 else None
        return given, family, middle

    def _user(self, role: str, n: int, salt: int, orgs: list[str], href: str, email_domain: str = DOMAIN):
        sid = self.user_id(role, n)
        given, family, middle = self._person(role, n, salt)
        h = _mix(self.seed, salt + 100, n)
        status = "tobedeleted" if h % 89 == 7 else "active"
        # Staff numbers restart at 0 like students', so staff usernames carry their role prefix:
        # otherwise a teacher and a student with the same name and number would share a login.
        number = f"{n}" if role == "student" else f".{UserBlock.PREFIX[role]}{n}"
        username = f"{_ascii(given.split(' ')[0])}.{_ascii(family)}{number}"
        rec = self._base(sid, status)
        rec["username"] = username
        rec["userIds"] = [{"type": "SIS", "identifier": f"{UserBlock.PREFIX[role].upper()}{n:0{ID_WIDTH}d}"}]
        rec["enabledUser"] = _bool(h % 53 != 11)
        rec["givenName"] = given
        rec["familyName"] = family
        if middle is not None:
            rec["middleName"] = middle
        rec["role"] = role
        rec["identifier"] = f"{UserBlock.PREFIX[role].upper()}{n:0{ID_WIDTH}d}"
        rec["email"] = f"{username}@{email_domain}"
        rec["orgs"] = [guid_ref(href, "orgs", org) for org in orgs]
        return rec

    def _administrator(self, n: int, href: str) -> dict[str, Any]:
        org = "org-district" if n == 0 else self.schools[n - 1].sourced_id
        return self._user("administrator", n, 1, [org], href)

    def _teacher(self, n: int, href: str) -> dict[str, Any]:
        school = self.schools[bisect.bisect_right(self._teacher_offsets, n) - 1]
        rec = self._user("teacher", n, 2, [school.sourced_id], href)
        if n == TEACHER_WITHOUT_EMAIL:
            del rec["email"]
        return rec

    def _aide(self, n: int, href: str) -> dict[str, Any]:
        school = self.schools[bisect.bisect_right(self._aide_offsets, n) - 1]
        return self._user("aide", n, 3, [school.sourced_id], href)

    def _student(self, s: int, href: str) -> dict[str, Any]:
        school, grade, _ = self._student_place(s)
        rec = self._user("student", s, 4, [school.sourced_id], href, email_domain=f"students.{DOMAIN}")
        cycle, p = divmod(s, 3)
        guardians = {0: (0, 1), 1: (2, 3), 2: (4,)}[p]
        rec["agents"] = [guid_ref(href, "users", self.user_id("guardian", 5 * cycle + g)) for g in guardians]
        rec["grades"] = [GRADES[school.kind][grade]]
        return rec

    def _guardian(self, g: int, href: str) -> dict[str, Any]:
        cycle, rem = divmod(g, 5)
        s = 3 * cycle + (0, 0, 1, 1, 2)[rem]
        school, _, _ = self._student_place(s)
        rec = self._user("guardian", g, 5, [school.sourced_id], href)
        rec["phone"] = f"+1 555 {(g // 10000) % 1000:03d} {g % 10000:04d}"
        rec["agents"] = [guid_ref(href, "users", self.student_id(s))]
        return rec

    # --- enrollments, demographics, categories ---------------------------------------------------
    def _enrollments(self, e: int, href: str) -> dict[str, Any]:
        if e < self._student_enrollments:
            cycle, rem = divmod(e, self._slot_offsets[-1])
            k = bisect.bisect_right(self._slot_offsets, rem) - 1
            s, slot = cycle * self.n_schools + k, rem - self._slot_offsets[k]
            school, grade, position = self._student_place(s)
            c = self._class_of(school, grade, slot, position // SECTION_SIZE)
            user, role, primary = self.student_id(s), "student", False
            term = SLOTS[school.kind][slot][1]
        else:
            j = e - self._student_enrollments
            school = self.schools[bisect.bisect_right(self._staff_enrollment_offsets, j) - 1]
            j -= self._staff_enrollment_offsets[school.index]
            if j < school.classes:
                p, primary = j, True
                user = self.user_id("teacher", self._teacher_offsets[school.index] + p // CLASSES_PER_TEACHER)
            else:
                p, primary = (j - school.classes) * AIDED_CLASS_EVERY, False
                user = self.user_id("aide", self._aide_offsets[school.index] + p // CLASSES_PER_AIDE)
            c, role = self._class_offsets[school.index] + p, "teacher"
            term = SLOTS[school.kind][self._class_place(c)[2]][1]
        session = SESSIONS[TERM_SESSION[term]]
        rec = self._base(self._id("enr", e), "tobedeleted" if e % 211 == 5 else "active")
        rec["user"] = guid_ref(href, "users", user)
        rec["class"] = guid_ref(href, "classes", self.class_id(c))
        rec["school"] = guid_ref(href, "orgs", school.sourced_id)
        rec["role"] = role
        rec["primary"] = _bool(primary)
        rec["beginDate"] = session[3]
        rec["endDate"] = session[4]
        return rec

    def _demographics(self, s: int, href: str) -> dict[str, Any]:
        school, grade, _ = self._student_place(s)
        h = _mix(self.seed, 6, s)
        age = 5 + _grade_number(GRADES[school.kind][grade])
        rec = self._base(self.student_id(s))
        rec["birthDate"] = f"{2026 - age:04d}-{1 + h % 12:02d}-{1 + (h >> 8) % 28:02d}"
        rec["sex"] = "female" if (h >> 16) % 2 else "male"
        race = (h >> 20) % 6
        for flag, k in (
            ("americanIndianOrAlaskaNative", 0),
            ("asian", 1),
            ("blackOrAfricanAmerican", 2),
            ("nativeHawaiianOrOtherPacificIslander", 3),
            ("white", 4),
            ("demographicRaceTwoOrMoreRaces", 5),
        ):
            rec[flag] = _bool(race == k)
        rec["hispanicOrLatinoEthnicity"] = _bool((h >> 24) % 4 == 0)
        rec["countryOfBirthCode"] = "US" if (h >> 28) % 10 else "MX"
        rec["stateOfBirthAbbreviation"] = "CA"
        rec["cityOfBirth"] = "San José" if (h >> 32) % 5 == 0 else "Sacramento"
        rec["publicSchoolResidenceStatus"] = "01652"
        return rec

    def _categories(self, i: int, href: str) -> dict[str, Any]:
        sid, title = CATEGORIES[i]
        rec = self._base(sid)
        rec["title"] = title
        return rec


def _grade_number(grade: str) -> int:
    return 0 if grade == "KG" else int(grade)
