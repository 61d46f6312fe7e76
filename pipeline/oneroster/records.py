"""OneRoster JSON records → flat rows of the fixed Parquet schema (`pipeline.oneroster.schema`).

Reading is lenient where providers are known to differ, strict where a value cannot be trusted:

* GUIDRefs become the sourcedId they point at (a bare string id is accepted too);
* multi-valued fields become lists (a comma-joined string, as some providers send `periods`, is split);
* dates are typed: `YYYY-MM-DD`, or the date part of a date-time; date-times need a date and a time,
  a date alone means midnight UTC, and no offset means UTC;
* booleans may be JSON booleans, "true"/"false" in any case, or 0/1;
* numbers are accepted where text is expected (identifiers sent as numbers);
* unknown fields are ignored, and `password` is never read.

An empty string is a missing value (CSV-born providers send blanks), never a format problem.
A value that cannot be read becomes null and a `Problem` (rule `date_format`, `boolean_format` or
`wrong_type`) naming the record's position in the page, so the record checks can reject it.
Conversion is column by column with one converter per column; the common all-valid page takes a
fast path, and only a page with a bad value is walked value by value to find it. Faster still, a page's
JSON body can be read straight into Arrow (`PageConverter.decode`), never becoming Python objects.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from pipeline.oneroster import checks
from pipeline.oneroster.checks import Problem, field_name
from pipeline.oneroster.schema import TIMESTAMP, USER_ID, Entity


class BadValue(ValueError):
    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


Converter = Callable[[Any], Any]

# A page with a statusInfoSet (in any case) is left to the client, which reports it.
_STATUS_INFO = re.compile(rb"statusinfo", re.IGNORECASE)
_OBJECT_START = re.compile(rb"\s*\{")
_BOOLEANS = {True: True, False: False, "true": True, "false": False, "1": True, "0": False}


def to_bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    # Type-checked first: 1.0 == 1 == True as dict keys, and a float is no boolean.
    kind = type(value)
    key = value.strip().lower() if kind is str else value if kind is bool or kind is int else None
    try:
        return _BOOLEANS[key]
    except KeyError:
        raise BadValue(checks.BOOLEAN_FORMAT, "must be true/false (or 1/0)") from None


def to_text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BadValue(checks.WRONG_TYPE, f"must be text, not {type(value).__name__}")


def to_ref(value: Any) -> str | None:
    """A GUIDRef `{"href", "sourcedId", "type"}` → its sourcedId."""
    if type(value) is dict:
        value = value.get("sourcedId")
        if value is None:
            raise BadValue(checks.WRONG_TYPE, "is a reference without a sourcedId")
    return to_text(value) or None


def _list_of(item: Converter) -> Converter:
    def convert(value: Any) -> list | None:
        if value is None:
            return None
        if type(value) is str:
            return [part.strip() for part in value.split(",") if part.strip()]
        if type(value) is not list:
            raise BadValue(checks.WRONG_TYPE, f"must be a list, not {type(value).__name__}")
        # Blank and null elements carry nothing (a GUIDRef without an id, an empty grade).
        return [converted for v in value if (converted := item(v))]

    return convert


_DATE_MESSAGE = "must be a date YYYY-MM-DD"
_TIMESTAMP_MESSAGE = "must be an ISO 8601 date-time"


def _starts_with_date(text: str) -> bool:
    # Python also reads ISO basic and week dates (20240820, 2024-W34-2); OneRoster writes YYYY-MM-DD.
    return len(text) >= 10 and text[4] == "-" and text[7] == "-"


# Bulk feeds repeat the same few dates millions of times, hence the caches.
@functools.lru_cache(maxsize=65536)
def _parse_date(text: str) -> dt.date:
    try:
        if not _starts_with_date(text) or (len(text) > 10 and text[10] not in "T "):
            raise ValueError(text)
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise BadValue(checks.DATE_FORMAT, _DATE_MESSAGE) from None


@functools.lru_cache(maxsize=65536)
def _parse_timestamp(text: str) -> dt.datetime:
    try:
        if not _starts_with_date(text):
            raise ValueError(text)
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadValue(checks.DATE_FORMAT, _TIMESTAMP_MESSAGE) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _text_parsed_by(parse: Callable[[str], Any], message: str) -> Converter:
    def convert(value: Any) -> Any:
        if value is None or value == "":
            return None
        if type(value) is not str:
            raise BadValue(checks.DATE_FORMAT, message)
        return parse(value)

    return convert


to_date = _text_parsed_by(_parse_date, _DATE_MESSAGE)
to_timestamp = _text_parsed_by(_parse_timestamp, _TIMESTAMP_MESSAGE)


def to_metadata(value: Any) -> str | None:
    """The provider's extension bag, kept verbatim as JSON text."""
    if value is None or type(value) is str:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def to_user_id(value: Any) -> dict:
    if type(value) is not dict:
        raise BadValue(checks.WRONG_TYPE, "must hold {type, identifier} objects")
    return {"type": to_text(value.get("type")), "identifier": to_text(value.get("identifier"))}


def _converter(column: str, type_: pa.DataType) -> Converter:
    if column == "metadata":
        return to_metadata
    if column in checks.REFERENCE_FIELDS:
        return _list_of(to_ref) if pa.types.is_list(type_) else to_ref
    if type_ == TIMESTAMP:
        return to_timestamp
    if type_ == pa.date32():
        return to_date
    if type_ == pa.bool_():
        return to_bool
    if type_ == pa.string():
        return to_text
    if type_ == pa.list_(pa.string()):
        return _list_of(to_text)
    if type_ == pa.list_(USER_ID):
        return _list_of(to_user_id)
    raise TypeError(f"no converter for column {column} of type {type_}")


_GUIDREF = pa.struct([pa.field("sourcedId", pa.string())])


def _raw_type(column: str, type_: pa.DataType) -> pa.DataType | None:
    """The type pyarrow reads a column's JSON value into by itself, or None where only Python can."""
    if column == "metadata" or type_ == pa.bool_():
        return None  # free-form JSON; booleans arrive as true, "TRUE" or 1 (see _booleans)
    if column in checks.REFERENCE_FIELDS:
        return pa.list_(_GUIDREF) if pa.types.is_list(type_) else _GUIDREF
    if type_ in (TIMESTAMP, pa.date32()):
        return pa.string()
    return type_


class _NeedsPython(Exception):
    """A page holds a value the Arrow shortcut would read differently from the Python converters."""


def _sourced_ids(refs: pa.Array) -> pa.Array:
    ids = pc.struct_field(refs, "sourcedId")
    # A reference without an id is a problem to report, a blank one a missing value: Python's call.
    if ids.null_count != refs.null_count or pc.any(pc.equal(ids, "")).as_py():
        raise _NeedsPython
    return ids


def _without_blank_items(lists: pa.ListArray, items: pa.Array) -> pa.Array:
    if items.null_count or (pa.types.is_string(items.type) and pc.any(pc.equal(items, "")).as_py()):
        raise _NeedsPython  # the Python converters drop blank items
    return pa.ListArray.from_arrays(lists.offsets, items, mask=lists.is_null())


_BOOLEAN_TEXT = pa.array(["true", "1", "false", "0"])


def _booleans(values: list) -> pa.Array:
    """JSON booleans, or text true/false/1/0 in any case, as `to_bool` reads them."""
    try:
        return pa.array(values, type=pa.bool_())
    except pa.ArrowInvalid:
        return _text_booleans(pa.array(values, type=pa.string()))


def _text_booleans(values: pa.Array) -> pa.Array:
    text = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    if pc.any(pc.and_(pc.is_valid(text), pc.invert(pc.is_in(text, _BOOLEAN_TEXT)))).as_py():
        raise _NeedsPython
    return pc.or_(pc.equal(text, "true"), pc.equal(text, "1"))


class DecodedPage(Sequence):
    """A page whose JSON body pyarrow read into Arrow: `raw` holds each record's fields as the JSON
    reader typed them (`PageConverter.convert_decoded` makes rows of them, a batch of pages at once).

    It is still a sequence of the records as received, but those are only parsed (from the body) when
    someone asks for them: when a record breaks a rule, or a value needs the Python converters.
    """

    def __init__(self, raw: pa.StructArray, body: bytes, envelope_key: str):
        self.raw = raw
        self._body = body
        self._envelope_key = envelope_key

    @functools.cached_property
    def records(self) -> list:
        return json.loads(self._body)[self._envelope_key]

    def __len__(self) -> int:
        return len(self.raw)

    def sourced_id(self, index: int) -> Any:
        """The sourcedId of a record, read from the columns: the records stay unparsed."""
        return self.raw.field("sourcedId")[index].as_py()

    def __getitem__(self, index):
        return self.records[index]

    def __iter__(self) -> Iterator:
        return iter(self.records)


class PageConverter:
    """Turns pages of one entity's JSON records into Arrow tables of its schema.

    The Python converters above define the result. A page is first tried as a shortcut: pyarrow
    reads the records into a struct array natively (about twice as fast, which matters because the
    client's page fetching shares this interpreter), and Arrow casts the dates. The shortcut is taken
    only when it provably gives the same rows: any value it cannot read, or would read differently (a
    lenient form, a blank, a bad value to report), sends the page down the Python path instead.
    """

    def __init__(self, entity: Entity):
        self.entity = entity
        self._columns = [
            (column, field_name(entity.name, column), _converter(column, entity.schema.field(column).type))
            for column in entity.schema.names
        ]
        self._raw_types = {column: _raw_type(column, entity.schema.field(column).type) for column in entity.schema.names}
        self._text_list_fields = [
            field for column, field, _ in self._columns if self._raw_types[column] == pa.list_(pa.string())
        ]
        self._raw = pa.struct(
            [pa.field(field, self._raw_types[column]) for column, field, _ in self._columns if self._raw_types[column]]
        )
        # The JSON reader takes metadata and booleans as text only: an object or a JSON boolean makes it
        # fail, and the page goes the Python way, which reads those as the converters say.
        raw_struct = pa.struct(
            [pa.field(field, self._raw_types[column] or pa.string()) for column, field, _ in self._columns]
        )
        self._json_options = pa_json.ParseOptions(
            explicit_schema=pa.schema([pa.field(entity.envelope_keys[0], pa.list_(raw_struct))]),
            unexpected_field_behavior="ignore",
            newlines_in_values=True,
        )

    def convert(self, records: Sequence[Any]) -> tuple[pa.Table, list[Problem]]:
        """All records of the page as rows (bad values null) and the problems found on the way."""
        if all(type(r) is dict for r in records):
            try:
                return self._convert_in_arrow(records), []
            except (_NeedsPython, BadValue, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                pass
        return self._convert_in_python(records)

    def decode(self, body: bytes) -> DecodedPage | None:
        """One page's JSON body read into Arrow; see `decode_many`."""
        return self.decode_many([body])[0]

    def decode_many(self, bodies: Sequence[bytes]) -> list[DecodedPage | None]:
        """Pages' JSON bodies read by pyarrow's JSON reader (C++, no Python object per record), several in
        one call: the reader's fixed cost per call is about that of reading a page of 100 records, and it
        holds the interpreter lock the client's requests also need. None for a page that needs the Python
        way: a value the reader cannot type as the schema says, another envelope, or a statusInfoSet the
        client should report. A page the reader fails on is read alone, so it spoils no other page."""
        if any(_STATUS_INFO.search(body) for body in bodies) or (pages := self._read_json(bodies)) is None:
            return [None] if len(bodies) == 1 else [self.decode(body) for body in bodies]
        return pages

    def _read_json(self, bodies: Sequence[bytes]) -> list[DecodedPage | None] | None:
        """The pages of `bodies` (one JSON object each), or None when the reader fails on any of them."""
        if len(bodies) > 1 and not all(_OBJECT_START.match(body) for body in bodies):
            # Each body must give at least one row for a matching row count to mean exactly one each (a
            # blank body and one with two objects would otherwise pass together, their rows shifted).
            return None
        text = bodies[0] if len(bodies) == 1 else b"\n".join(bodies)
        try:
            read = pa_json.read_json(
                pa.BufferReader(text),
                read_options=pa_json.ReadOptions(use_threads=False, block_size=len(text) + 1),
                parse_options=self._json_options,
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
            return None
        if read.num_rows != len(bodies):
            return None  # a body that is not one JSON object: rows would not line up with pages
        envelope = self.entity.envelope_keys[0]
        lists = read.column(envelope).combine_chunks()
        records, offsets = lists.values, lists.offsets.to_pylist()
        pages: list[DecodedPage | None] = []
        for index, body in enumerate(bodies):
            raw = records.slice(offsets[index], offsets[index + 1] - offsets[index])
            # A missing envelope or a null record: the Python path names the problem.
            readable = lists[index].is_valid and not raw.null_count
            pages.append(DecodedPage(raw, body, envelope) if readable else None)
        return pages

    def convert_decoded(self, pages: Sequence[DecodedPage]) -> tuple[pa.Table, list[Problem]]:
        """The rows of decoded pages, read as `convert` reads their records (which it does when the
        Arrow shortcut would read a value differently)."""
        try:
            return self._table_from_raw(pa.concat_arrays([page.raw for page in pages])), []
        except (_NeedsPython, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return self._convert_in_python([record for page in pages for record in page])

    def _convert_in_arrow(self, records: Sequence[dict]) -> pa.Table:
        # pyarrow would read a string as a list of characters; Python splits "09,10" at commas.
        if any(type(r.get(field)) is str for field in self._text_list_fields for r in records):
            raise _NeedsPython
        raw = pa.array(records, type=self._raw)
        return self._table_from_raw(raw, python_values=lambda field: [r.get(field) for r in records])

    def _table_from_raw(self, raw: pa.StructArray, python_values: Callable[[str], list] | None = None) -> pa.Table:
        """The schema's columns from a struct array of raw values; fields the struct lacks are read from
        `python_values` (the records' values of that field)."""
        arrays = []
        for column, field, convert in self._columns:
            type_ = self.entity.schema.field(column).type
            if raw.type.get_field_index(field) < 0:
                values = python_values(field)
                arrays.append(_booleans(values) if type_ == pa.bool_() else pa.array(list(map(convert, values)), type=type_))
                continue
            values = raw.field(field)  # the records themselves are never null, so no parent mask
            raw_type = values.type
            if type_ == pa.bool_():
                values = _text_booleans(values)
            elif raw_type == _GUIDREF:
                values = _sourced_ids(values)
            elif raw_type == pa.list_(_GUIDREF):
                values = _without_blank_items(values, _sourced_ids(values.values))
            elif pa.types.is_list(type_):
                values = _without_blank_items(values, values.values)
            elif raw_type != type_:
                values = values.cast(type_)  # strict ISO dates; anything laxer fails over to Python
            arrays.append(values)
        return pa.Table.from_arrays(arrays, schema=self.entity.schema)

    def _convert_in_python(self, records: Sequence[Any]) -> tuple[pa.Table, list[Problem]]:
        problems: list[Problem] = []
        if not all(type(r) is dict for r in records):
            problems += [Problem(i, checks.WRONG_TYPE, "", "record is not a JSON object") for i, r in enumerate(records) if type(r) is not dict]
            records = [r if type(r) is dict else {} for r in records]
        arrays = []
        for column, field, convert in self._columns:
            type_ = self.entity.schema.field(column).type
            try:
                # pa.array inside: it is what finds text that is not Unicode (UnicodeEncodeError, a ValueError).
                arrays.append(pa.array([convert(r.get(field)) for r in records], type=type_))
            except (BadValue, AttributeError, TypeError, ValueError):
                arrays.append(self._column_slowly(records, field, type_, convert, problems))
        return pa.Table.from_arrays(arrays, schema=self.entity.schema), problems

    def _column_slowly(
        self, records: Sequence[dict], field: str, type_: pa.DataType, convert: Converter, problems: list[Problem]
    ) -> pa.Array:
        """The column converted value by value: a bad value becomes null and a Problem."""
        found = len(problems)
        values = self._convert_slowly(records, field, convert, problems)
        try:
            return pa.array(values, type=type_)
        except UnicodeEncodeError:
            # Rare, so only now is every value also tried alone: which one Arrow cannot store.
            del problems[found:]
            values = self._convert_slowly(records, field, lambda raw: _storable(convert(raw), type_), problems)
            return pa.array(values, type=type_)

    def _convert_slowly(self, records: Sequence[dict], field: str, convert: Converter, problems: list[Problem]) -> list:
        values = []
        personal = checks.is_personal(self.entity.name, field)
        for i, record in enumerate(records):
            raw = record.get(field)
            try:
                values.append(convert(raw))
            except BadValue as bad:
                values.append(None)
                value = "" if personal else f" {_clip(raw)}"
                problems.append(Problem(i, bad.rule, field, f"{field}{value} {bad}"))
            except (AttributeError, TypeError, ValueError):
                values.append(None)
                problems.append(Problem(i, checks.WRONG_TYPE, field, f"{field} has an unreadable value"))
        return values


def _storable(value: Any, type_: pa.DataType) -> Any:
    """`value` if Arrow can store it as `type_`. JSON may escape a lone UTF-16 surrogate ("\\ud83d", a name
    cut in the middle of an emoji), which Python reads but no UTF-8 column can hold."""
    try:
        pa.array([value], type=type_)
    except UnicodeEncodeError:
        raise BadValue(checks.WRONG_TYPE, "is not valid Unicode (a lone UTF-16 surrogate)") from None
    return value


def _clip(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redacted_json(entity: str, record: Any) -> str:
    """The record as received, without personal fields or the password, for the rejects file."""
    if type(record) is not dict:
        return json.dumps(_clip(record))
    kept = {k: v for k, v in record.items() if k != "password" and not checks.is_personal(entity, k)}
    text = json.dumps(kept, ensure_ascii=False, default=str)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: \u escapes keep it readable, and storable as UTF-8
        text = json.dumps(kept, default=str)
    return text
