"""The suite's own layout (issue 21 item 5), for tests/, testbed/ and benchmarks/:

- no module imports a test module: what several test modules share (fakes, builders, the admission
  evaluator) lives in a support module named after what it is (tests/infra/schema.py,
  tests/ci/workflows.py, ...), and the machinery tests and benchmarks share (control plane, kubelet
  harness, e2e driver, Pulumi mocks harness) in testbed/, so a test file can be moved or renamed without
  breaking another;
- testbed/ and benchmarks/ import nothing from tests/;
- tests/infra/ is laid out like infra/: each of its folders is a package of infra/ and has an
  `__init__.py` (two test files of the same name in different folders need it);
- every file the docs, the code and the tests name by its path (`tests/<folders>/<name>.py`,
  `testbed/<folders>/<name>.py`) exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_MODULE = re.compile(r"^tests(\.\w+)*\.test_\w+$")
MENTION = re.compile(r"\b(?:tests|testbed)/(?:\w[\w.-]*/)*\w[\w.-]*\.py\b")
# Where a test or testbed file is named by its path. Not the requirement files: they are the locks' inputs,
# so even a comment there waits for 'bash .ci/lock'.
MENTIONING = (
    "README.md",
    "pyproject.toml",
    "image/*",
    ".ci/*",
    ".github/**/*",
    "docs/**/*.md",
    "dask_adaptive/**/*.py",
    "infra/**/*.py",
    "policy/**/*.py",
    "benchmarks/**/*.py",
    "benchmarks/**/*.md",
    "tests/**/*.py",
    "tests/**/*.md",
    "tests/**/*.sh",
    "testbed/**/*.py",
)


def covered_sources() -> list[Path]:
    return sorted(f for folder in ("tests", "testbed", "benchmarks") for f in (ROOT / folder).rglob("*.py"))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(source: str, module: str) -> set[str]:
    """Every module the source of `module` imports, at any depth (function-level imports too)."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from tests.x import test_y`
    return found


def imports_of_test_modules() -> set[tuple[str, str]]:
    return {
        (path.relative_to(ROOT).as_posix(), imported)
        for path in covered_sources()
        for imported in imported_modules(path.read_text("utf-8"), module_of(path))
        if TEST_MODULE.match(imported)
    }


def test_no_module_imports_a_test_module() -> None:
    assert sorted(imports_of_test_modules()) == [], "move what they share into a support module"


def test_testbed_and_benchmarks_import_nothing_from_tests() -> None:
    """testbed/ is what tests and benchmarks share; neither it nor a benchmark reaches back into tests/."""
    found = {
        (path.relative_to(ROOT).as_posix(), imported)
        for path in covered_sources()
        if not path.is_relative_to(ROOT / "tests")
        for imported in imported_modules(path.read_text("utf-8"), module_of(path))
        if imported == "tests" or imported.startswith("tests.")
    }
    assert sorted(found) == []


def test_the_check_sees_every_form_of_import() -> None:
    source = (
        "import tests.infra.test_a\n"
        "from tests.infra.test_b import x\n"
        "from tests.infra import test_c, harness\n"
        "def f():\n"
        "    from tests.kube.test_d import y\n"
        "from .test_e import z\n"
        "from ..schema import schema_errors\n"
        "from .. import test_f\n"
    )
    found = {m for m in imported_modules(source, "tests.infra.k8s.probe") if TEST_MODULE.match(m)}
    assert found == {
        "tests.infra.test_a",
        "tests.infra.test_b",
        "tests.infra.test_c",
        "tests.kube.test_d",
        "tests.infra.k8s.test_e",
        "tests.infra.test_f",
    }


def test_tests_infra_is_laid_out_like_infra() -> None:
    tests_infra = ROOT / "tests" / "infra"
    folders = {p.name for p in tests_infra.iterdir() if p.is_dir() and p.name != "__pycache__"}
    packages = {p.parent.name for p in (ROOT / "infra").glob("*/__init__.py")}
    assert folders == packages
    assert [f for f in sorted(folders) if not (tests_infra / f / "__init__.py").is_file()] == []
    assert [p.name for p in tests_infra.glob("*/*/")] == []  # one level, as infra/ has


def test_every_test_file_named_by_its_path_exists() -> None:
    files = {f for pattern in MENTIONING for f in ROOT.glob(pattern) if f.is_file()}
    mentions = {
        (f.relative_to(ROOT).as_posix(), path)
        for f in files
        for path in MENTION.findall(f.read_text("utf-8", errors="replace"))
    }
    assert len(mentions) > 20  # the patterns do find the mentions
    assert sorted(m for m in mentions if not (ROOT / m[1]).is_file()) == []
