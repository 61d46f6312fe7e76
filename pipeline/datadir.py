"""Where rosterbridge keeps its files, and how it writes them so no reader ever sees half a file."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import dagster as dg

DEFAULT_DATA_DIR = "./data"
SNAPSHOT_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only if the block succeeds.

    The rename is atomic on one filesystem, so a concurrent reader sees the old file or the new one.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def remove_folder(path: Path) -> None:
    """Remove a folder of ours that is no longer needed (a retired baseline, an old run's files). A
    failure is logged with its cause, not hidden and not fatal: what it costs is disk, and the work
    that needed the folder gone has already succeeded."""
    def report(_function, failed_path, error) -> None:
        cause = error[1] if isinstance(error, tuple) else error  # onerror passes exc_info, onexc the exception
        dg.get_dagster_logger("rosterbridge").warning(f"could not remove {failed_path}: {cause}; remove it by hand")

    if not path.exists():
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=report)
    else:
        shutil.rmtree(path, onerror=report)


def atomic_write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(final: Path, text: str) -> None:
    atomic_write_bytes(final, text.encode("utf-8"))


class DataDir(dg.ConfigurableResource):
    """The data directory (`ROSTERBRIDGE_DATA_DIR`, default `./data`) and its layout.

    oneroster/<YYYY-MM-DD>/<entity>.parquet (+ rejects/<entity>.parquet): one snapshot per night.
    canvas/district/*.csv and canvas/term=<key>/*.csv: Canvas SIS-import data sets.
    gradebook/term=<key>/...: grade passback exports, computed objects and the ledger.
    demo/: state of the embedded demo servers.
    """

    root: str = DEFAULT_DATA_DIR

    @property
    def path(self) -> Path:
        return Path(self.root).resolve()

    # --- OneRoster snapshots -------------------------------------------------------------------
    def oneroster_root(self) -> Path:
        return self.path / "oneroster"

    def snapshot_dir(self, snapshot: str) -> Path:
        if not SNAPSHOT_NAME.match(snapshot):
            raise ValueError(f"snapshot name must be YYYY-MM-DD, got {snapshot!r}")
        return self.oneroster_root() / snapshot

    def entity_path(self, snapshot: str, entity: str) -> Path:
        return self.snapshot_dir(snapshot) / f"{entity}.parquet"

    def rejects_path(self, snapshot: str, entity: str) -> Path:
        return self.snapshot_dir(snapshot) / "rejects" / f"{entity}.parquet"

    def snapshots(self) -> list[str]:
        """Snapshot names, oldest first."""
        root = self.oneroster_root()
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and SNAPSHOT_NAME.match(p.name))

    def snapshot_paths(self, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Path]:
        """The files of `required` entities (and of `optional` ones it has) from one snapshot: the newest
        that holds every required entity. Nights never mix: a night whose extract stopped half-way (users
        written, enrollments not) is passed over as a whole, with a warning, rather than joined with an
        older night's enrollments."""
        required = tuple(required)
        passed_over = []
        for snapshot in reversed(self.snapshots()):
            paths = {entity: self.entity_path(snapshot, entity) for entity in required}
            missing = [entity for entity, path in paths.items() if not path.exists()]
            if missing:
                passed_over.append(f"{snapshot} (no {', '.join(missing)})")
                continue
            if passed_over:
                dg.get_dagster_logger("rosterbridge").warning(
                    f"using OneRoster snapshot {snapshot}: the newer {'; '.join(passed_over)} "
                    f"{'is' if len(passed_over) == 1 else 'are'} incomplete (materialize the missing oneroster/* assets)"
                )
            return paths | {e: path for e in optional if (path := self.entity_path(snapshot, e)).exists()}
        snapshots = self.snapshots()
        missing = [e for e in required if not snapshots or not self.entity_path(snapshots[-1], e).exists()]
        raise FileNotFoundError(
            f"no OneRoster snapshot under {self.oneroster_root()} holds all of {', '.join(required)}: "
            f"materialize {', '.join(f'oneroster/{e}' for e in missing)} first"
        )

    # --- Canvas SIS-import data sets -------------------------------------------------------------
    def canvas_dir(self, data_set: str) -> Path:
        """`data_set` is "district" or a term partition key."""
        name = "district" if data_set == "district" else f"term={data_set}"
        return self.path / "canvas" / name

    # --- Grade passback ------------------------------------------------------------------------
    def gradebook_dir(self, term: str) -> Path:
        return self.path / "gradebook" / f"term={term}"


def tonight(now: dt.datetime | None = None) -> str:
    """The snapshot name for a run starting now: the UTC date."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")
