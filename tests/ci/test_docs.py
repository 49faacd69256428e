"""The README is the front door: short, the two Quick start commands exactly as CI runs them, and a link
to every page of docs/. Every relative link in README.md and docs/ leads to a file, and every `#anchor` to
a heading of it (GitHub's slugs), so moving text cannot leave a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 300
DEMO = "bash .ci/bootstrap && .venv/bin/python -m dask_adaptive demo"
TESTS = (
    "bash .ci/bootstrap && bash tests/kube/build.sh && .venv/bin/ruff check . && .venv/bin/python -m pytest"
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move reference text to docs/"


def test_readme_links_every_page_of_docs() -> None:
    assert DOCS, "docs/ is empty"
    links = set(LINK.findall(README.read_text()))
    for page in DOCS:
        assert f"docs/{page.name}" in links, page.name


def test_quick_start_is_the_two_commands_and_ci_runs_the_second() -> None:
    quick = README.read_text().split("## Quick start")[1].split("\n## ")[0]
    blocks = [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, flags=re.S)]
    assert blocks == [DEMO, TESTS]
    run = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert run[-1] == TESTS


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} (no such file)"
        if anchor:
            assert file.suffix == ".md", f"{page.name}: {target}"
            assert anchor in anchors(file), f"{page.name}: {target} (no such heading)"


def test_slugs_follow_github() -> None:
    assert slug("Cost: node-hours") == "cost-node-hours"
    assert slug("### `adaptive-dask:autoscaler` (object, aws only)".lstrip("# ")) == (
        "adaptive-daskautoscaler-object-aws-only"
    )
    assert slug("The `local` target") == "the-local-target"
