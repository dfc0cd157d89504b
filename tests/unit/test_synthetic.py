"""The synthetic collections of bench/ keep the bundled market's shape."""

import numpy as np

from bench import synthetic


def test_a_synthetic_collection_has_the_bundled_shape_and_is_seeded():
    bundled = synthetic.load_bundled()
    a = synthetic.generate(3000, seed=1, bundled=bundled)
    b = synthetic.generate(3000, seed=1, bundled=bundled)

    assert a.sales.equals(b.sales) and a.items.equals(b.items)
    assert len(a.items) == 3000 and a.items.index.is_unique
    per_item = len(a.sales) / len(a.items)
    assert abs(per_item - len(bundled.sales) / len(bundled.punks)) < 0.05
    assert a.sales["ts"].is_monotonic_increasing and (a.sales["price"] > 0).all()
    assert set(a.sales["item_key"]) <= set(a.items.index)
    # Every item copies a bundled punk: its traits are in the bundled vocabulary.
    known = {t for acc in bundled.punks["accessories"] for t in acc}
    assert {t for acc in a.items["accessories"] for t in acc} <= known
    assert abs(a.items["accessory_count"].mean() - bundled.punks["accessory_count"].mean()) < 0.1
    # The 2021 boom is there: most sales are in 2021, as in the bundled market.
    share_2021 = lambda ts: float(np.mean(ts.dt.year == 2021))  # noqa: E731
    assert abs(share_2021(a.sales["ts"]) - share_2021(bundled.sales["ts"])) < 0.05


def test_synthetic_items_copy_the_gender_and_skin_tone_of_the_punk_they_copy():
    bundled = synthetic.load_bundled()
    items = synthetic.generate(2000, seed=3, bundled=bundled).items
    rows = bundled.punks.assign(accessories=bundled.punks["accessories"].map(tuple))
    pairs = set(zip(rows["type"], rows["accessories"], rows["gender"], rows["skin_tone"], strict=True))
    drawn = zip(items["item_type"], items["accessories"].map(tuple), items["gender"], items["skin_tone"], strict=True)
    assert all(row in pairs for row in drawn)
    assert 0.3 < (items["gender"] == "Female").mean() < 0.47  # 38 % of the punks
