"""`python -m pipeline.sync --term <key>`: a key that is no term is refused before anything runs."""

from __future__ import annotations

import pytest

from pipeline.sync import UnknownTermError, run_sync
from tests.test_e2e_sync import NIGHT, stack

TERM = "as-2027-fall"


def test_a_mistyped_term_key_is_refused_before_the_snapshot_or_district_run(tmp_path):
    with stack(tmp_path) as s:
        first = run_sync(s.defs, s.instance, terms=[TERM], night=NIGHT, say=lambda _: None)
        assert first.ok
        runs_before = len(s.instance.get_runs())
        imports_before = len(s.imports())
        with pytest.raises(UnknownTermError, match="as-2027-fal.*nothing was run"):
            run_sync(s.defs, s.instance, terms=[TERM, "as-2027-fal"], night=NIGHT, say=lambda _: None)
        assert len(s.instance.get_runs()) == runs_before and len(s.imports()) == imports_before
