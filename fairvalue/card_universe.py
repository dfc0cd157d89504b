"""The card universe (config/cards.yaml): validated, then upserted as the collection's items.

Each card is validated on its own so an error names the card (its id, or its position when the
id itself is wrong) and the field: `card 'base1-4-charizard-holo' (#1): category: Input should be
'grail', 'chase', 'meta' or 'personal'`. Loading is an upsert keyed by (collection, card id): a
second load of the same file changes nothing, an edited card is updated, and a card removed from
the file is kept (its prices and past valuations stay), marked inactive so it is no longer
collected or valued, and reported; it is never deleted, and it is active again once the file lists it again.

The file may declare the market's first day (`first_day:` at the top level): it is stored with the
collection on every load (collections.first_day, as the file says it, none when the file has none),
and a price dated before it is refused as `before_collection`, as a punk sale before the punks'
release is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import select

from fairvalue.settings import Settings, get_settings
from models.validation import EARLIEST_SALE
from storage.db import session_scope
from storage.ingest import DAILY_PRICES
from storage.tables import Collection, Item, utcnow
from storage.upsert import insert_ignoring_conflicts, upsert

CATEGORIES = ("grail", "chase", "meta", "personal")


class CardConfigError(ValueError):
    """The card file is wrong; `problems` lists every error, each naming the card and the field."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


class CardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="our key: lowercase, digits, dashes")
    name: str = Field(min_length=1, max_length=200)
    set: str = Field(min_length=1, max_length=200)
    number: str = Field(min_length=1, max_length=32)
    external_id: str = Field(pattern=r"^[0-9]{1,12}$", description="the TCGplayer product id")
    category: Literal["grail", "chase", "meta", "personal"]
    tags: list[str] = Field(default_factory=list)
    active: bool = True
    priority: int = Field(3, ge=1, le=5)

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def attributes(self) -> dict[str, Any]:
        return {"name": self.name, "set": self.set, "number": self.number, "external_id": self.external_id,
                "category": self.category, "tags": list(self.tags), "active": self.active,
                "priority": self.priority}


class UniverseHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection: str = Field("cards", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = "Pokémon cards"
    currency: str = Field("USD", min_length=3, max_length=8)
    # The first day the market could trade: a price dated before it is refused (before_collection).
    first_day: date | None = Field(None, ge=EARLIEST_SALE.date())
    cards: list[Any]

    @field_validator("first_day")
    @classmethod
    def _not_in_the_future(cls, value: date | None) -> date | None:
        # A first day after today would refuse every real price as before_collection until then.
        if value is not None and value > datetime.now(UTC).date():
            raise ValueError(f"{value.isoformat()} is in the future: every price until then would be refused")
        return value


@dataclass
class CardUniverse:
    collection: str
    name: str
    currency: str
    cards: list[CardSpec]
    first_day: date | None = None

    @property
    def active(self) -> list[CardSpec]:
        return [c for c in self.cards if c.active]


def _problems(exc: ValidationError, where: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(card)"
        out.append(f"{where}: {loc}: {err['msg']}")
    return out


def parse_universe(document: Any, source: str = "cards.yaml") -> CardUniverse:
    """Validate a parsed YAML document; raise CardConfigError listing every problem."""
    if not isinstance(document, dict):
        raise CardConfigError(source, ["the file must be a mapping with a `cards:` list"])
    try:
        header = UniverseHeader.model_validate(document)
    except ValidationError as exc:
        raise CardConfigError(source, _problems(exc, "header")) from None
    problems: list[str] = []
    cards: list[CardSpec] = []
    seen_ids: dict[str, int] = {}
    seen_external: dict[str, str] = {}
    for position, raw in enumerate(header.cards, 1):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        where = f"card {raw_id!r} (#{position})" if isinstance(raw_id, str) and raw_id else f"card #{position}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping of fields, got {type(raw).__name__}")
            continue
        try:
            card = CardSpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_problems(exc, where))
            continue
        if card.id in seen_ids:
            problems.append(f"{where}: id: duplicate of card #{seen_ids[card.id]}")
            continue
        if card.external_id in seen_external:
            other = seen_external[card.external_id]
            problems.append(f"{where}: external_id: {card.external_id} is also card {other!r}")
            continue
        seen_ids[card.id] = position
        seen_external[card.external_id] = card.id
        cards.append(card)
    if not cards and not problems:
        problems.append("cards: the list is empty")
    if problems:
        raise CardConfigError(source, problems)
    return CardUniverse(header.collection, header.name, header.currency, cards, header.first_day)


def read_universe(path: Path) -> CardUniverse:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a Latin-1 "Pokémon", or no text at all
        raise CardConfigError(str(path), [f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset "
                                          f"{exc.start}"]) from None
    except yaml.YAMLError as exc:
        raise CardConfigError(str(path), [f"not valid YAML: {exc}"]) from None
    except OSError as exc:  # the default FAIRVALUE_CARDS_CONFIG missing, say, or unreadable
        raise CardConfigError(str(path), [f"cannot read it: {exc.strerror or exc}"]) from None
    return parse_universe(document, str(path))


@dataclass
class LoadReport:
    collection: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    not_in_file: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)  # of not_in_file, those this load marked inactive
    first_day: date | None = None  # the market's first day, as stored
    first_day_changed: bool = False  # this load stored it (a new collection, or the file's changed)


def load_universe(universe: CardUniverse) -> LoadReport:
    """Create the collection (kind daily_prices) if needed and upsert every card as an item."""
    report = LoadReport(universe.collection)
    with session_scope() as session:
        insert_ignoring_conflicts(session, Collection.__table__, [{
            "slug": universe.collection, "name": universe.name, "kind": DAILY_PRICES,
            "currency": universe.currency, "created_at": utcnow()}])
        coll = session.exec(select(Collection).where(Collection.slug == universe.collection)).one()
        if coll.kind != DAILY_PRICES:
            raise CardConfigError(universe.collection, [f"collection {coll.slug!r} exists with kind {coll.kind}, "
                                                        f"not {DAILY_PRICES}"])
        report.first_day = universe.first_day
        if coll.first_day != universe.first_day:  # the file is the universe: an edit, or a removal, is stored
            coll.first_day, report.first_day_changed = universe.first_day, True
            session.add(coll)
        existing = {i.item_key: (i.item_type, i.attributes) for i in
                    session.exec(select(Item).where(Item.collection_id == coll.id))}
        rows = []
        for card in universe.cards:
            row = {"collection_id": coll.id, "item_key": card.id, "item_type": card.category,
                   "attributes": card.attributes()}
            before = existing.get(card.id)
            if before is None:
                report.new += 1
            elif before == (row["item_type"], row["attributes"]):
                report.unchanged += 1
                continue
            else:
                report.updated += 1
            rows.append(row)
        report.not_in_file = sorted(set(existing) - {c.id for c in universe.cards})
        # A card taken out of the file is no longer wanted: collector and nowcast skip inactive cards.
        for key in report.not_in_file:
            item_type, attributes = existing[key]
            if attributes.get("active", True):
                report.deactivated.append(key)
                rows.append({"collection_id": coll.id, "item_key": key, "item_type": item_type,
                             "attributes": {**attributes, "active": False}})
        upsert(session, Item.__table__, rows, keys=("collection_id", "item_key"))
    return report


def load_configured(settings: Settings | None = None, path: Path | None = None) -> LoadReport:
    settings = settings or get_settings()
    return load_universe(read_universe(path or settings.cards_config))
