"""The dask_adaptive package shipped as a ConfigMap: every source file, exact content, stable keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.k8s import preload as kp
from tests.infra.preload_files import PACKAGE, on_disk


def test_collects_exactly_the_package_files_with_their_content():
    files = kp.collect()
    assert {f.path: f.content for f in files} == on_disk(PACKAGE)
    assert any(f.path == "dask_adaptive/backends/base.py" for f in files)  # a nested module travels too


def test_keys_have_no_slash_and_paths_restore_the_tree():
    files = kp.collect()
    by_key = {f.key: f for f in files}
    assert by_key["backends__base.py"].path == "dask_adaptive/backends/base.py"
    assert by_key["__init__.py"].path == "dask_adaptive/__init__.py"
    assert all("/" not in f.key for f in files)
    vol = kp.volume("preload", "cm", files)
    assert {i["path"] for i in vol["configMap"]["items"]} == {f.path for f in files}
    assert vol["configMap"]["defaultMode"] == 0o444


def test_read_relative_to_the_module_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert kp.package_dir() == PACKAGE
    assert {f.path for f in kp.collect()} == set(on_disk(PACKAGE))


def make_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_hash_changes_with_any_content_or_path(tmp_path):
    pkg = make_package(tmp_path / "a", {"__init__.py": "", "x.py": "A = 1\n", "sub/y.py": "B = 2\n"})
    before = kp.content_hash(kp.collect(pkg))
    assert kp.content_hash(kp.collect(pkg)) == before
    (pkg / "sub" / "y.py").write_text("B = 3\n")
    changed = kp.content_hash(kp.collect(pkg))
    assert changed != before
    (pkg / "sub" / "y.py").rename(pkg / "sub" / "z.py")
    assert kp.content_hash(kp.collect(pkg)) != changed


def test_pycache_and_other_files_are_not_shipped(tmp_path):
    pkg = make_package(tmp_path / "p", {"__init__.py": "", "__pycache__/x.py": "junk", "notes.txt": "no"})
    assert [f.path for f in kp.collect(pkg)] == ["dask_adaptive/__init__.py"]


def test_key_clash_is_refused(tmp_path):
    pkg = make_package(tmp_path / "p", {"__init__.py": "", "a__b.py": "", "a/b.py": ""})
    with pytest.raises(ValueError, match="same ConfigMap key"):
        kp.collect(pkg)


def test_oversize_package_is_refused(tmp_path):
    pkg = make_package(tmp_path / "p", {"__init__.py": "", "big.py": "#" * (kp.MAX_CONFIGMAP_BYTES + 1)})
    with pytest.raises(ValueError, match="ConfigMap limit"):
        kp.collect(pkg)


def test_not_a_package_is_refused(tmp_path):
    pkg = make_package(tmp_path / "p", {"x.py": ""})
    with pytest.raises(ValueError, match=r"no __init__\.py"):
        kp.collect(pkg)
