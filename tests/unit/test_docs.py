"""Docs name every setting the code has, so the configuration reference cannot drift."""

from __future__ import annotations

import pytest

from tests import helpers
from zenlead import settings

CONFIG_DOC = (helpers.ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("field", settings.FIELDS, ids=lambda f: f.name)
def test_every_setting_is_documented(field: settings.Field) -> None:
    """Each setting's key, flag and environment variable appear in docs/configuration.md."""
    for text in (f"`{field.name}`", f"`{field.flag}`", f"`{field.env}`"):
        assert text in CONFIG_DOC
