"""docs/api.md lists each public name once, at its home, and the project
spells every name as its home does."""

import pathlib
import re

from tests import api_table

# Text the project writes for users and itself: where a second spelling of a
# public name would teach it.
_SOURCES = (
    "README.md",
    "CONTRIBUTING.md",
    "docs",
    "examples",
    "benchmarks",
    "tfee",
    "tests",
)
_SUFFIXES = (".py", ".md", ".cc", ".h")
# Where old spellings must appear: the deprecations and their tests.
_OLD_SPELLINGS_LIVE_IN = (
    "tfee/compress/pruning.py",
    "tfee/recipes.py",
    "tests/api_table.py",
    "tests/test_api_docs.py",
)


def test_docs_api_md_is_the_generated_table():
    assert (
        api_table.API_DOC.read_text() == api_table.render()
    ), "docs/api.md is out of date: run `.venv/bin/python -m tests.api_table`"


def test_each_public_name_is_listed_once():
    listed = [
        f"{namespace}.{name}"
        for namespace, rows in api_table.homes()
        for name, _, _ in rows
    ]
    assert len(listed) == len(set(listed))
    assert "tfee.evaluate" in listed and "tfee.policy.evaluate" not in listed


def _other_spellings():
    """{`tfee.sub.name` a user must not be taught: `tfee.name`} for every
    name whose home is elsewhere."""
    home = {}
    for namespace, rows in api_table.homes():
        for name, _, _ in rows:
            home.setdefault(name, set()).add(namespace)
    others = {}
    for spelling, module in api_table.namespaces():
        for name in getattr(module, "__all__", ()):
            if name in home and spelling not in home[name]:
                if len(home[name]) == 1 and (
                    getattr(module, name)
                    is _resolve(f"{next(iter(home[name]))}.{name}")
                ):
                    others[f"{spelling}.{name}"] = f"{next(iter(home[name]))}.{name}"
    return others


def _resolve(path):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name, None)


def _project_files():
    root = api_table.ROOT
    for source in _SOURCES:
        path = root / source
        paths = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in paths:
            if file.suffix in _SUFFIXES and file.is_file():
                yield file.relative_to(root).as_posix(), file.read_text()


def test_the_project_spells_each_name_at_its_home():
    others = _other_spellings()
    assert "tfee.policy.evaluate" in others
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(o) for o in sorted(others, key=len)[::-1]) + r")\b"
    )
    found = []
    for path, text in _project_files():
        if path in _OLD_SPELLINGS_LIVE_IN:
            continue
        for match in pattern.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append(f"{path}:{line} {match.group(0)} -> {others[match.group(0)]}")
    assert not found, "\n".join(found)


def test_the_page_names_no_module_the_code_calls_private(tmp_path):
    text = pathlib.Path(api_table.API_DOC).read_text()
    assert not re.search(r"`tfee\.(\w+\.)*_\w+`", text)
