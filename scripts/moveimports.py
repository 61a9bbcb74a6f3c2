"""Rewrite imports after moving modules or names (a refactoring aid for src/, tests/, bench/).

    .venv/bin/python scripts/moveimports.py 'layerforge.cmd -> layerforge.proc' \
        'layerforge.ossource:Layer -> layerforge.oci.layer' \
        'layerforge.resolve:_uv_argv -> layerforge.lock.uv:compile_argv'

A module rule also moves its submodules (`layerforge.build -> layerforge.builder`). A name rule
moves one name (and may rename it: the file's references follow when it was imported without an
alias). Handles `from M import a, b as c` (one line or in parentheses, at any indentation, with a
trailing comment), `from P import m [as x]`, uses `m.Name` of a module imported whole, and dotted
strings ("layerforge.cmd.which"). Run `ruff check --fix` afterwards to sort the imports.
Other branches can run the same rules over their trees: that is how a rename merges.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATEMENT = re.compile(
    r"^(?P<indent>[ \t]*)from (?P<module>[\w.]+) import "
    r"(?:\((?P<paren>[^)]*)\)|(?P<plain>[^\n#]*?))(?P<comment>[ \t]*#[^\n]*)?$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Rule:
    old: str
    new: str
    name: str | None = None  # a name rule: old:name -> new[:new_name]
    new_name: str | None = None


def parse_rule(text: str) -> Rule:
    left, right = (part.strip() for part in text.split("->"))
    if ":" in left:
        old, name = left.split(":")
        new, _, new_name = right.partition(":")
        return Rule(old, new, name, new_name or name)
    return Rule(left, right)


def move_module(module: str, rules: list[Rule]) -> str:
    for rule in rules:
        if rule.name is None and (module == rule.old or module.startswith(rule.old + ".")):
            return rule.new + module[len(rule.old) :]
    return module


def split(module: str) -> tuple[str, str]:
    parent, _, base = module.rpartition(".")
    return parent, base


def rewrite(text: str, rules: list[Rule]) -> str:  # noqa: C901 (a one-off tool)
    renames: dict[str, str] = {}
    module_renames: dict[str, str] = {}
    module_aliases: dict[str, str] = {}  # alias in this file -> old full module name

    def statement(match: re.Match[str]) -> str:
        indent, module = match["indent"], match["module"]
        comment = match["comment"] or ""
        body = match["paren"] if match["paren"] is not None else match["plain"]
        items_done: list[str] = []
        items = [item.strip() for item in body.replace("\n", " ").split(",") if item.strip()]
        groups: dict[str, list[str]] = {}
        for item in items:
            name, _, alias = (part.strip() for part in item.partition(" as "))
            target, new_name = move_module(module, rules), name
            named = False  # a name rule wins over a module rule for the same module
            for rule in rules:
                if rule.name == name and rule.old == module:
                    target, new_name = rule.new, rule.new_name or name
                    named = True
            full = f"{module}.{name}"
            moved_full = move_module(full, rules)
            if moved_full != full and not named:  # `from P import m`: a module moved
                target, new_name = split(moved_full)
                if not alias and new_name != name:
                    module_renames[name] = new_name
                items_done.append(name)
            if any(rule.old == full for rule in rules if rule.name is None) or (
                module.startswith("layerforge") and name.islower() and not alias
            ):
                module_aliases[alias or name] = full
            if new_name != name and not alias and name not in items_done:
                renames[name] = new_name
            spelled = new_name + (f" as {alias}" if alias else "")
            groups.setdefault(target, []).append(spelled)
        if len(groups) == 1 and next(iter(groups)) == module and not items_done:
            return match[0]
        return "\n".join(
            f"{indent}from {target} import {', '.join(names)}{comment}"
            for target, names in groups.items()
        )

    text = STATEMENT.sub(statement, text)
    # uses of a module imported whole: `ossource.Layer` where Layer moved elsewhere
    for alias, full in module_aliases.items():
        for rule in rules:
            if rule.name and rule.old == full:
                parent, base = split(rule.new)
                pattern = rf"(?<![\w.]){re.escape(alias)}\.{re.escape(rule.name)}\b"
                if re.search(pattern, text):
                    text = re.sub(pattern, f"{base}.{rule.new_name}", text)
                    line = f"from {parent} import {base}\n"
                    if line not in text:
                        text = _add_import(text, line)
    for old, new in renames.items():
        text = re.sub(rf"(?<![\w.\"']){re.escape(old)}\b(?=[.(\[:,) \n])", new, text)
    for old, new in module_renames.items():
        text = re.sub(rf"(?<![\w.\"']){re.escape(old)}\.(?=\w)", new + ".", text)
    # dotted strings and `import layerforge.x`
    for rule in rules:
        if rule.name:
            text = text.replace(
                f'"{rule.old}.{rule.name}"', f'"{rule.new}.{rule.new_name or rule.name}"'
            )
        else:
            text = re.sub(rf"(?<=[\"' ]){re.escape(rule.old)}(?=[.\"' \n])", rule.new, text)
    return text


def _add_import(text: str, line: str) -> str:
    lines = text.splitlines(keepends=True)
    for index, existing in enumerate(lines):
        if existing.startswith(("from layerforge", "import layerforge")):
            lines.insert(index, line)
            return "".join(lines)
    for index, existing in enumerate(lines):
        if existing.startswith(("from ", "import ")) and "__future__" not in existing:
            lines.insert(index, line)
            return "".join(lines)
    return line + text


def main() -> None:
    rules = [parse_rule(arg) for arg in sys.argv[1:]]
    if not rules:
        sys.exit(__doc__)
    changed = 0
    for folder in ("src", "tests", "bench", "scripts", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md") or "runtime/" in str(path.relative_to(ROOT)):
                continue
            if path.name == "moveimports.py":
                continue
            text = path.read_text()
            new = rewrite(text, rules)
            if new != text:
                path.write_text(new)
                changed += 1
    print(f"{changed} files rewritten", file=sys.stderr)


if __name__ == "__main__":
    main()
