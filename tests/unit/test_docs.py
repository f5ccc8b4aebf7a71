"""Each setting is declared once (queue_bridge/settings.py, queue_bridge/front_door/api_settings.py) and the docs'
tables are generated from the declarations: a table that no longer matches fails here (rewrite them with
`python -m devtools.settings_table`)."""
from __future__ import annotations

from devtools.settings_table import BLOCK, DOCS, render


def test_settings_tables_are_generated_from_the_declarations():
    for name, path in DOCS.items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert name in {m.group(2) for m in BLOCK.finditer(text)}, f"{path} has no settings:{name} table"
        assert render(text) == text, f"{path}: run python -m devtools.settings_table"


def test_a_stale_table_is_seen():
    text = "<!-- settings:bridge -->\n| an old table |\n<!-- /settings -->"
    assert render(text) != text and "SONICFLOW_AMQP_URL" in render(text)
