"""The settings tables in docs/queue.md and docs/api.md, generated from the settings' declarations (one place each:
queue_bridge/settings.py and queue_bridge/front_door/api_settings.py), between `<!-- settings:NAME -->` and
`<!-- /settings -->` markers. tests/unit/test_docs.py fails when a table is stale.

    python -m devtools.settings_table            # rewrite the tables in place
"""
from __future__ import annotations

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = {"bridge": os.path.join(ROOT, "docs", "queue.md"), "api": os.path.join(ROOT, "docs", "api.md")}
BLOCK = re.compile(r"(<!-- settings:(\w+) -->\n)(.*?)(<!-- /settings -->)", re.S)


def table(name: str) -> str:
    from queue_bridge.front_door.api_settings import ApiSettings
    from queue_bridge.paths import OUT, ROOT
    from queue_bridge.settings import Settings

    rows = (Settings if name == "bridge" else ApiSettings).documented()
    lines = ["| flag | environment | default | what |", "|---|---|---|---|"]
    for flag, env, default, help_ in rows:
        # the checkout's folders by name, not this machine's path to them
        default = default.replace(OUT, "out").replace(ROOT + os.sep, "")
        lines.append(f"| {f'`{flag}`' if flag else ''} | `{env}` | {f'`{default}`' if default else '(empty)'} | "
                     f"{help_} |")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def main() -> int:
    for path in DOCS.values():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(render(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
