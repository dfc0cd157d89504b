"""Times stored as ISO text are served as iso() writes times: UTC with a Z."""

from __future__ import annotations

import pytest

from fairvalue.answers import iso_text


@pytest.mark.parametrize("stored, served", [
    ("2021-12-31T18:12:38", "2021-12-31T18:12:38Z"),  # naive: UTC, as every stored time
    ("2021-12-31T18:12:38.250000", "2021-12-31T18:12:38.250000Z"),
    ("2021-12-31T18:12:38Z", "2021-12-31T18:12:38Z"),
    ("2021-12-31T20:12:38+02:00", "2021-12-31T18:12:38Z"),
    ("2021-12-31", "2021-12-31"),  # a day stays a day
    ("skipped: not enough sales", "skipped: not enough sales"),
    (None, None),
    (3, 3),
])
def test_iso_text(stored, served):
    assert iso_text(stored) == served
