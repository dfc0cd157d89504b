"""docs/settings.md is the settings' own reference: written from fairvalue/settings.py."""

from fairvalue.settings import PROJECT_ROOT, Settings
from fairvalue.settings_doc import settings_markdown


def test_every_setting_says_what_it_does():
    assert [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()] == []


def test_the_settings_reference_is_what_the_settings_say():
    """Regenerate with `python -m fairvalue.settings_doc > docs/settings.md`."""
    assert (PROJECT_ROOT / "docs" / "settings.md").read_text() == settings_markdown()


def test_the_reference_names_every_setting_once_and_no_secret():
    text = settings_markdown()
    for name in Settings.model_fields:
        assert text.count(f"`FAIRVALUE_{name.upper()}`") == 1, name
    assert "dev-webhook-secret" not in text
