"""The dependency locks: what a clean install gets is exactly what the suite ran, and no upstream release
can change it. `.ci/lock` writes them; these tests refuse a lock that no longer matches its inputs."""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT_LOCK = ROOT / "requirements.lock"
POLICY_LOCK = ROOT / "policy" / "requirements.txt"
PROJECT_INPUTS = (ROOT / "requirements.txt", ROOT / "requirements-dev.txt")
POLICY_INPUTS = (ROOT / "policy" / "requirements.in",)
S3_LOCK = ROOT / "tests" / "s3" / "requirements.txt"  # .venv-s3: solved on its own (tests/s3/requirements.in)
S3_INPUTS = (ROOT / "tests" / "s3" / "requirements.in",)

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)==(?P<version>[^\s;\\]+)\s*(;(?P<marker>[^\\]+))?\\?$")


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    marker: str | None  # a universal lock may hold one entry per Python range (numpy, contourpy)
    hashes: tuple[str, ...]

    def applies(self) -> bool:
        return self.marker is None or Marker(self.marker).evaluate()


def locked(path: Path) -> list[Entry]:
    """Every entry of a uv-compiled hashed lock, in file order."""
    entries: list[Entry] = []
    for line in path.read_text().splitlines():
        match = _ENTRY.match(line)
        if match:
            marker = match["marker"].strip() if match["marker"] else None
            entries.append(Entry(canonicalize_name(match["name"]), match["version"], marker, ()))
        elif entries and line.strip().startswith("--hash=sha256:"):
            digest = line.strip().removeprefix("--hash=sha256:").rstrip(" \\")
            last = entries[-1]
            entries[-1] = Entry(last.name, last.version, last.marker, (*last.hashes, digest))
    return entries


def here(entries: list[Entry]) -> dict[str, Entry]:
    """The entries this interpreter installs: one per name, or the lock is ambiguous."""
    chosen: dict[str, Entry] = {}
    for entry in entries:
        if entry.applies():
            assert entry.name not in chosen, f"{entry.name} locked twice for this interpreter"
            chosen[entry.name] = entry
    return chosen


def direct_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec:
            name, sep, pinned = spec.partition("==")
            assert sep and pinned, f"{path.name}: {spec!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = pinned
    return pins


def recorded_inputs_sha(path: Path) -> str:
    match = re.search(r"^# inputs-sha256: ([0-9a-f]{64})$", path.read_text(), re.M)
    assert match, f"{path.name} has no inputs-sha256 header: regenerate it with 'bash .ci/lock'"
    return match[1]


@pytest.mark.parametrize(
    ("lock", "inputs"), [(PROJECT_LOCK, PROJECT_INPUTS), (POLICY_LOCK, POLICY_INPUTS), (S3_LOCK, S3_INPUTS)]
)
def test_lock_is_current_with_its_requirement_files(lock: Path, inputs: tuple[Path, ...]):
    """Editing a requirement file without re-running .ci/lock fails here, before any install drifts."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs)).hexdigest()
    assert recorded_inputs_sha(lock) == digest, (
        f"{lock.relative_to(ROOT)} was solved from other requirement files: run 'bash .ci/lock'"
    )


def test_every_direct_pin_is_locked_at_its_version():
    versions: dict[str, set[str]] = {}
    for entry in locked(PROJECT_LOCK):
        versions.setdefault(entry.name, set()).add(entry.version)
    for path in PROJECT_INPUTS:
        for name, pinned in direct_pins(path).items():
            assert versions.get(name) == {pinned}, (
                f"{name}: {path.name} pins {pinned}, the lock {versions.get(name)}"
            )


@pytest.mark.parametrize("lock", [PROJECT_LOCK, POLICY_LOCK, S3_LOCK])
def test_every_locked_package_carries_hashes(lock: Path):
    entries = locked(lock)
    assert len(entries) > 10, "the lock should hold the whole closure, not only the direct pins"
    unhashed = sorted(e.name for e in entries if not e.hashes)
    assert not unhashed, f"{lock.name}: entries without --hash: {unhashed}"
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for e in entries for h in e.hashes)


def test_policy_pack_lock_is_the_projects_closure():
    """The pack's venv runs only releases the suite tested: every pin (and every hash) is the project's."""
    project = {(e.name, e.version): e for e in locked(PROJECT_LOCK)}
    pack = locked(POLICY_LOCK)
    assert {"pulumi-policy", "pulumi", "grpcio", "protobuf"} <= {e.name for e in pack}
    for entry in pack:
        twin = project.get((entry.name, entry.version))
        assert twin, f"the pack locks {entry.name}=={entry.version}, the project's lock does not"
        assert set(entry.hashes) <= set(twin.hashes), (
            f"{entry.name}: the pack accepts a file the project never did"
        )


def test_s3_lock_runs_the_projects_dask():
    """A Dask client in .venv and workers from .venv-s3 (tests/kube/test_data_identity.py) exchange pickled
    tasks: what the scheduler preload requires to match (dask, distributed, cloudpickle, msgpack, toolz) is
    the project lock's release, whatever else differs."""
    from dask_adaptive.versions import MATCHED_PACKAGES

    project = {e.name: e.version for e in here(locked(PROJECT_LOCK)).values()}
    s3 = here(locked(S3_LOCK))
    assert {"dask", "distributed", "cloudpickle"} <= set(MATCHED_PACKAGES)
    for name in MATCHED_PACKAGES:
        assert s3[name].version == project[name], (
            f"{name}: .venv-s3 {s3[name].version}, .venv {project[name]}"
        )
    assert {"moto", "boto3", "botocore"} <= set(s3)


def test_venv_holds_exactly_the_locked_versions():
    """The suite itself runs on the lock (bootstrap syncs .venv from it), not on whatever was installed."""
    wrong = {}
    for name, entry in here(locked(PROJECT_LOCK)).items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != entry.version:
            wrong[name] = (entry.version, installed)
    assert not wrong, f"locked vs installed: {wrong}; run 'bash .ci/bootstrap'"


def test_lock_parser_reads_markers_and_hash_blocks(tmp_path: Path):
    sample = tmp_path / "sample.lock"
    sample.write_text(
        "# inputs-sha256: " + "0" * 64 + "\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n"
        "    --hash=sha256:" + "a" * 64 + " \\\n"
        "    --hash=sha256:" + "b" * 64 + "\n"
        "    # via click\n"
        "Zict==3.0.0 \\\n"
        "    --hash=sha256:" + "c" * 64 + "\n"
    )
    assert locked(sample) == [
        Entry("colorama", "0.4.6", "sys_platform == 'win32'", ("a" * 64, "b" * 64)),
        Entry("zict", "3.0.0", None, ("c" * 64,)),
    ]
    assert set(here(locked(sample))) == {"zict"} | ({"colorama"} if sys.platform == "win32" else set())
