"""PUTs OneRoster gradebook objects with bounded concurrency and records each outcome in the ledger.

A 4xx with a statusInfoSet is the SIS refusing *that* object: it is recorded (with the SIS's message)
and retried on a later run, and the other objects go on. Anything else (the SIS down after the
client's retries, a revoked credential) stops the phase: what was accepted so far is recorded, the
rest is sent again next time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pipeline.passback.ledger import Accepted, Ledger, Rejected
from pipeline.resources.oneroster import OneRosterError

# Statuses that are about the client or the SIS (credentials, permissions, still throttled after the
# client's retries), not about one object: they stop the run instead of being recorded per item.
FATAL_STATUSES = frozenset({401, 403, 429})
RECORD_EVERY_ITEMS = 200
RECORD_EVERY_SECONDS = 1.0

# Where each GUIDRef type lives under the provider's base URL.
COLLECTION_OF_TYPE = {
    "academicSession": "academicSessions",
    "category": "categories",
    "class": "classes",
    "lineItem": "lineItems",
    "student": "students",
    "user": "users",
}


@dataclass(frozen=True)
class Kind:
    name: str  # ledger kind
    collection: str  # REST collection the PUT goes to
    envelope: str  # request body key


CATEGORY = Kind("category", "categories", "category")
LINE_ITEM = Kind("lineItem", "lineItems", "lineItem")
COURSE_GRADE = Kind("courseGrade", "lineItems", "lineItem")
RESULT = Kind("result", "results", "result")
KINDS = {k.name: k for k in (CATEGORY, LINE_ITEM, COURSE_GRADE, RESULT)}


@dataclass(frozen=True)
class Item:
    """One object to PUT: its payload as computed by SQL (no hrefs, no dateLastModified)."""

    kind: Kind
    sourced_id: str
    payload: str
    payload_hash: str
    sis_course_id: str | None = None
    line_item_id: str | None = None
    parent_id: str | None = None  # what the SIS must hold first: a lineItem's category, a result's lineItem
    assignment_id: int | None = None  # assignment lineItems: the Canvas assignment


@dataclass
class PhaseStats:
    sent: int = 0
    created: int = 0
    replaced: int = 0
    rejected: int = 0
    held_back: int = 0
    not_ok: set[str] = field(default_factory=set)  # sourcedIds the SIS does not hold in their current form


def request_body(item: Item, base_url: str, now: str) -> dict:
    """The PUT body: full GUIDRefs (href added here), nulls left out, dateLastModified set."""
    payload = json.loads(item.payload)
    body = {}
    for key, value in payload.items():
        if value is None:
            continue
        if isinstance(value, dict) and "sourcedId" in value and "type" in value:
            value = {
                "href": f"{base_url}/{COLLECTION_OF_TYPE[value['type']]}/{value['sourcedId']}",
                "sourcedId": value["sourcedId"],
                "type": value["type"],
            }
        body[key] = value
    body["dateLastModified"] = now
    return {item.kind.envelope: body}


def rejection_message(exc: OneRosterError) -> str:
    info = exc.status_info
    detail = (info.description or str(info)) if info else ""
    return f"HTTP {exc.status_code}: {detail or exc}"


class GradebookWriter:
    """Sends one phase (categories, lineItems or results) at a time, recording as it goes."""

    def __init__(self, session, ledger: Ledger, *, max_concurrency: int, log: Callable[[str], None] = print):
        self.session = session
        self.ledger = ledger
        self.max_concurrency = max(1, max_concurrency)
        self.log = log

    def put_all(self, items: Iterable[Item], *, blocked_by: Callable[[Item], str | None] = lambda _: None) -> PhaseStats:
        """PUT every item (unless `blocked_by` names a reason to hold it back) and record the outcomes."""
        stats = PhaseStats()
        accepted: list[Accepted] = []
        rejected: list[Rejected] = []
        last_record = time.monotonic()
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

        def flush() -> None:
            nonlocal last_record
            if accepted or rejected:
                self.ledger.record(accepted, rejected)
                accepted.clear()
                rejected.clear()
            last_record = time.monotonic()

        def settle(item: Item, future: Future) -> None:
            try:
                status = future.result().status_code
            except OneRosterError as exc:
                if exc.status_code is None or exc.status_code in FATAL_STATUSES or exc.status_code >= 500:
                    raise
                stats.rejected += 1
                stats.not_ok.add(item.sourced_id)
                message = rejection_message(exc)
                self.log(f"{item.kind.name} {item.sourced_id} rejected: {message}")
                rejected.append(self._rejected(item, exc.status_code, message))
                return
            stats.sent += 1
            stats.created += status == 201
            stats.replaced += status != 201
            accepted.append(
                Accepted(item.sourced_id, item.kind.name, item.sis_course_id, item.line_item_id, item.payload_hash, status,
                         item.assignment_id)
            )

        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="passback-put") as pool:
            in_flight: dict[Future, Item] = {}
            try:
                for item in items:
                    reason = blocked_by(item)
                    if reason:
                        stats.held_back += 1
                        stats.not_ok.add(item.sourced_id)
                        rejected.append(self._rejected(item, None, reason))
                        continue
                    body = request_body(item, self.session.base_url, now)
                    in_flight[pool.submit(self.session.put, f"/{item.kind.collection}/{item.sourced_id}", body)] = item
                    while len(in_flight) >= self.max_concurrency * 2:
                        self._drain(in_flight, settle, return_when=FIRST_COMPLETED)
                    if len(accepted) + len(rejected) >= RECORD_EVERY_ITEMS or time.monotonic() - last_record > RECORD_EVERY_SECONDS:
                        flush()
                self._drain(in_flight, settle)
            except BaseException:
                for pending in in_flight:
                    pending.cancel()
                # Whatever finished before the failure is recorded, so the next run does not resend it.
                for future, item in list(in_flight.items()):
                    if future.done() and not future.cancelled() and future.exception() is None:
                        settle(item, future)
                flush()
                raise
            flush()
        return stats

    @staticmethod
    def _drain(in_flight: dict[Future, Item], settle, return_when=None) -> None:
        done, _ = wait(in_flight, return_when=return_when or "ALL_COMPLETED")
        for future in done:
            item = in_flight.pop(future)
            settle(item, future)

    @staticmethod
    def _rejected(item: Item, status: int | None, message: str) -> Rejected:
        return Rejected(item.sourced_id, item.kind.name, item.sis_course_id, item.line_item_id, item.payload_hash, status, message)

    def delete(self, kind: Kind, sourced_ids: Iterable[str],
               refused: list[tuple[str, str]] | None = None) -> Iterator[str]:
        """DELETE each object; yields those the SIS removed (or no longer had). With `refused`, a DELETE
        the SIS refuses for that object or for lack of the gradebook.delete scope (a 4xx other than
        401/429) is listed there and the others go on; otherwise it stops the run."""
        for sourced_id in sourced_ids:
            try:
                self.session.delete(f"/{kind.collection}/{sourced_id}")
            except OneRosterError as exc:
                status = exc.status_code
                if status == 404:
                    pass
                elif refused is not None and status is not None and 400 <= status < 500 and status not in (401, 429):
                    refused.append((sourced_id, rejection_message(exc)))
                    continue
                else:
                    raise
            yield sourced_id
