"""The database gives the model the same items as the bundled files: both loaders (the
driver's cursor on PostgreSQL, the ORM elsewhere) against the file path, attributes included."""

from __future__ import annotations

import pandas as pd
import pytest

from fairvalue import pipeline
from fairvalue.settings import get_settings
from models.features import ITEM_ATTRIBUTES
from storage import market
from storage.bundled import market_data_from_files
from storage.db import session_scope

pytestmark = pytest.mark.integration


def test_both_database_loaders_give_the_files_items_with_their_attributes(seeded):
    settings = get_settings()
    bundled = settings.data_dir / settings.collection
    files = market_data_from_files(bundled / "punks.csv", [], None, None, settings.min_floor_fraction).items
    with session_scope() as session:
        coll = pipeline.collection(session, settings)
        loaded = market.load_market_data(session, coll).items
        orm_items, _ = market._items_and_sales(session, coll)
    orm_items = orm_items.set_index("item_key").loc[loaded.index]
    columns = ["item_type", "accessory_count", "accessories", *ITEM_ATTRIBUTES]
    assert files.loc[loaded.index, "gender"].value_counts().to_dict() == {"Male": 6160, "Female": 3840}
    for frame in (loaded, orm_items):
        pd.testing.assert_frame_equal(frame[columns], files.loc[loaded.index, columns], check_dtype=False)
