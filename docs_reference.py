"""The docs' reference lists, rendered from the code so they cannot fall behind: every recipe key with its default
(the recipe's config classes) and every plugin with its options and capability flags (the plugin registry).

A page holds a list between ``<!-- reference: NAME -->`` and ``<!-- /reference -->``. ``mkdocs build`` renders
it afresh (this file is the site's hook, in mkdocs.yml), ``tests/test_docs.py`` fails when a page's text differs
from the code's, and ``python docs_reference.py`` rewrites the pages."""

from __future__ import annotations

import re
from pathlib import Path

from core.api import PLUGIN_KINDS, capabilities
from core.host.options import describe_fields
from core.host.registry import Registry
from core.recipe.load import FIXED_TABLES, PLUGIN_TABLES, PluginsTable

BLOCK = re.compile(r"(<!-- reference: ([\w-]+) -->\n)(.*?)(<!-- /reference -->)", re.S)


def value(default: object) -> str:
    """A default as a recipe writes it."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, str):
        return f'"{default}"'
    if isinstance(default, tuple | list):
        return f"[{', '.join(value(v) for v in default)}]"
    return str(default)


def shown(default: object) -> str:
    """A default in a table cell: as a recipe writes it, or *unset* (``None``: the key left out)."""
    return "*unset*" if default is None else f"`{value(default)}`"


def recipe_keys() -> str:
    """Every table and key of a recipe with its default; the plugin tables' own keys are their plugins'."""
    rows = ["| table | key | default |", "|---|---|---|"]
    for table, cls in (*FIXED_TABLES.items(), ("plugins", PluginsTable)):
        for i, (key, _, default) in enumerate(describe_fields(cls)):
            rows.append(f"| {f'`[{table}]`' if i == 0 else ''} | `{key}` | {shown(default)} |")
    for table, default in PLUGIN_TABLES.items():
        options = f"[the {table}'s options](plugins.md#every-plugin-and-its-options)"
        rows.append(f"| `[{table}]` | `name`, then {options} | {'*required*' if default is None else shown(default)} |")
    return "\n".join(rows)


def plugins() -> str:
    """Every built-in plugin by kind: its options with their defaults, and the capability flags it sets."""
    registry = Registry()
    registry.load_builtins()
    parts = []
    for kind in PLUGIN_KINDS:
        rows = [f"**`[{kind}]`**\n", "| name | options (default) | capabilities |", "|---|---|---|"]
        for info in (info for info in registry if info.kind == kind):
            fields = describe_fields(info.cls.Config)
            options = ", ".join(f"`{name}` ({shown(default)})" for name, _, default in fields) or "none"
            flags = ", ".join(f"`{flag}`" for flag, on in capabilities(info.cls).items() if on) or "none"
            rows.append(f"| `{info.name}` | {options} | {flags} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


RENDER = {"recipe-keys": recipe_keys, "plugins": plugins}


def render(markdown: str) -> str:
    """The page with every reference block rendered from the code."""
    return BLOCK.sub(lambda m: f"{m[1]}{RENDER[m[2]]()}\n{m[4]}", markdown)


def on_page_markdown(markdown: str, **_) -> str:
    """mkdocs hook: the site's lists are the code's, whatever the committed pages say."""
    return render(markdown)


if __name__ == "__main__":
    for page in sorted((Path(__file__).parent / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        if render(text) != text:
            page.write_text(render(text), encoding="utf-8")
            print(f"rewrote {page}")
