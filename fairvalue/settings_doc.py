"""docs/settings.md, written from the settings' own fields: every FAIRVALUE_* variable with its
default and meaning, so the reference cannot drift from fairvalue/settings.py (a unit test
compares the file with what this writes).

    python -m fairvalue.settings_doc > docs/settings.md
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from fairvalue.settings import PROJECT_ROOT, Settings

HEADER = """# Settings

Every setting of the service, read from `FAIRVALUE_*` environment variables (or `.env`), with its
default. Written by `python -m fairvalue.settings_doc > docs/settings.md` from
`fairvalue/settings.py`; a unit test fails when the two differ. The defaults are the embedded ones
(`./run up`): SQLite, a filesystem broker and local artifacts under `./var`.

| variable | default | what |
|---|---|---|
"""


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else "empty"
    if isinstance(value, Path):  # paths inside the checkout are shown relative to it, as on any machine
        value = value.relative_to(PROJECT_ROOT) if value.is_relative_to(PROJECT_ROOT) else value
    text = str(value)
    return f"`{text}`" if text not in ("", "{}") else "empty"


def settings_markdown() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        what = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `FAIRVALUE_{name.upper()}` | {_default(default)} | {what} |")
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
