-- Deterministic sourcedIds: RFC 4122 UUIDv5 (SHA-1 of namespace bytes + name, version 5, RFC variant),
-- the same value Python's uuid.uuid5 gives (pipeline/passback/ids.py; tests keep the two in step).
CREATE OR REPLACE TEMP MACRO passback_uuid_from_sha1(d) AS
    substr(d, 1, 8) || '-' || substr(d, 9, 4) || '-5' || substr(d, 14, 3) || '-'
    || substr('89ab', (('0x' || substr(d, 17, 1))::INTEGER & 3) + 1, 1) || substr(d, 18, 3) || '-'
    || substr(d, 21, 12);

CREATE OR REPLACE TEMP MACRO passback_uuid5(ns_hex, name) AS
    passback_uuid_from_sha1(sha1(unhex(ns_hex) || encode(name)));

-- Category titles are matched and keyed case- and spacing-insensitively.
CREATE OR REPLACE TEMP MACRO passback_title_key(title) AS
    lower(trim(regexp_replace(title, '[ \t\n\r\f\v]+', ' ', 'g')));

-- OneRoster date-time (UTC, milliseconds, Z) and date (the district's local calendar day).
CREATE OR REPLACE TEMP MACRO passback_datetime(ts) AS strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ');
CREATE OR REPLACE TEMP MACRO passback_local_date(ts, tz) AS CAST(timezone(tz, ts) AS DATE);
-- Midnight / last second of a local calendar day, as an instant.
CREATE OR REPLACE TEMP MACRO passback_day_start(d, tz) AS timezone(tz, CAST(d AS TIMESTAMP));
CREATE OR REPLACE TEMP MACRO passback_day_end(d, tz) AS timezone(tz, CAST(d AS TIMESTAMP) + INTERVAL '23:59:59');

-- A GUIDRef without its href: the writer adds the provider's href when it sends (the base URL is not
-- part of what the SIS accepted, so it stays out of the payload hash).
CREATE OR REPLACE TEMP MACRO passback_ref(id, ref_type) AS json_object('sourcedId', id, 'type', ref_type);
