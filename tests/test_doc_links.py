"""Every relative link of the README, CONTRIBUTING.md and docs/ resolves.

A link's file must exist in the project (relative to the page), and its
`#anchor`, where it has one, must name a heading of the page it points to, as
GitHub writes a heading's anchor. Links out of the project (http, mailto) are
left alone; code spans and code blocks hold no links.
"""

import re

import pytest

from tests import test_readme

ROOT = test_readme.ROOT
_LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text):
    """`text` without fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def anchors(text):
    """GitHub's anchors for the headings of a markdown page."""
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", _strip_fences(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _strip_fences(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def links(page):
    """(target path or None for the page itself, anchor or None) of each link."""
    with open(ROOT / page) as f:
        text = _prose(f.read())
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        yield path or None, anchor or None


def test_the_slugs_are_githubs():
    text = "# A `tfee` page\n## Pruning, together vs ordered (`pruning`)\n## A\n## A\n"
    assert anchors(text) == {
        "a-tfee-page",
        "pruning-together-vs-ordered-pruning",
        "a",
        "a-1",
    }


@pytest.mark.parametrize("page", test_readme.pages())
def test_every_relative_link_resolves(page):
    here = (ROOT / page).parent
    broken = []
    for path, anchor in links(page):
        target = (here / path).resolve() if path else ROOT / page
        if not target.exists():
            broken.append(f"{path}: no such file")
            continue
        if anchor and target.suffix == ".md":
            if anchor not in anchors(target.read_text()):
                broken.append(f"{path or ''}#{anchor}: no such heading")
    assert not broken, f"{page}: " + "; ".join(broken)


def test_the_docs_pages_are_reachable_from_the_readme():
    """Every page under docs/ is linked from the README or from a page it links."""
    reached, todo = set(), ["README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for path, _ in links(page):
            if path and path.endswith(".md"):
                target = ((ROOT / page).parent / path).resolve()
                if target.exists() and ROOT in target.parents:
                    todo.append(str(target.relative_to(ROOT)))
    unreached = [p for p in test_readme.pages() if p not in reached]
    assert not unreached, f"not reachable from README.md: {unreached}"
