"""tests/kube/build.sh decides by the host's os-release: bookworm and trixie build from bookworm, others stop.

The decision is exercised with sample os-release and apt source files passed in through environment
variables (`--plan` prints it and changes nothing), so one machine proves the trixie path too. apt itself
reads the private source list the plan prints (`apt-get update --print-uris`, nothing downloaded), so
"trixie reads bookworm" is apt's answer, not a string match on our own output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent / "build.sh"

BOOKWORM = (
    'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n'
)
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_ID="13"\nVERSION_CODENAME=trixie\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'
FORKY = 'PRETTY_NAME="Debian GNU/Linux forky/sid"\nID=debian\nVERSION_CODENAME=forky\n'

# deb822 lists as each release's installer writes them, behind a site mirror and its own keyring path
TRIXIE_SOURCES = """Types: deb
URIs: http://mirror.example.net/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/security.gpg

Types: deb
URIs: http://mirror.example.net/debian
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
BOOKWORM_SOURCES = TRIXIE_SOURCES.replace("trixie", "bookworm").replace("mirror.example.net", "m2.example")


def plan(tmp_path: Path, os_release: str, sources: str | None, *args: str) -> subprocess.CompletedProcess:
    osr = tmp_path / "os-release"
    osr.write_text(os_release)
    src = tmp_path / "debian.sources"
    if sources is not None:
        src.write_text(sources)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(tmp_path),
        "ADAPTIVE_DASK_OS_RELEASE": str(osr),
        "ADAPTIVE_DASK_APT_SOURCES": str(src),
        "ADAPTIVE_DASK_KUBE_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run(["bash", str(BUILD), *args], env=env, capture_output=True, text=True, timeout=30)


def private_sources(out: str) -> dict[str, str]:
    """The deb822 stanza the plan prints between 'private sources:' and 'steps:'."""
    block = out.split("private sources:", 1)[1].split("steps:", 1)[0].splitlines()[1:]
    return dict(line.strip().split(": ", 1) for line in block if line.strip())


def test_trixie_reads_bookworm_from_the_hosts_mirror(tmp_path):
    p = plan(tmp_path, TRIXIE, TRIXIE_SOURCES, "--plan")
    assert p.returncode == 0, p.stderr
    assert "host: Debian trixie" in p.stdout
    src = private_sources(p.stdout)
    assert src == {
        "Types": "deb deb-src",
        "URIs": "http://mirror.example.net/debian",  # the archive stanza, not the security one
        "Suites": "bookworm",
        "Components": "main",
        "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg",
    }
    steps = p.stdout.split("steps:", 1)[1]
    assert "apt-get download golang-1.19-go golang-1.19-src etcd-server; dpkg-deb -x" in steps
    assert "kubernetes=1.20.5+really1.20.2-1.1+deb12u1" in steps
    assert "GOROOT=" + str(tmp_path / "cache" / "go-root/usr/lib/go-1.19") in steps
    assert not (tmp_path / "cache").exists()  # a plan creates nothing


def test_bookworm_takes_the_same_pinned_path(tmp_path):
    p = plan(tmp_path, BOOKWORM, BOOKWORM_SOURCES, "--plan")
    assert p.returncode == 0, p.stderr
    assert "host: Debian bookworm" in p.stdout
    src = private_sources(p.stdout)
    assert (src["Suites"], src["URIs"], src["Types"]) == (
        "bookworm",
        "http://m2.example/debian",
        "deb deb-src",
    )


def test_missing_sources_file_falls_back_to_debian_defaults(tmp_path):
    p = plan(tmp_path, TRIXIE, None, "--plan")
    assert p.returncode == 0, p.stderr
    src = private_sources(p.stdout)
    assert src["URIs"] == "http://deb.debian.org/debian"
    assert src["Signed-By"] == "/usr/share/keyrings/debian-archive-keyring.gpg"


@pytest.mark.parametrize(("os_release", "name"), [(UBUNTU, "ID=ubuntu"), (FORKY, "VERSION_CODENAME=forky")])
@pytest.mark.parametrize("mode", [("--plan",), ()])
def test_other_systems_stop_before_creating_anything(tmp_path, os_release, name, mode):
    p = plan(tmp_path, os_release, TRIXIE_SOURCES, *mode)
    assert p.returncode == 2
    assert (
        name in p.stderr
        and "allowed: Debian bookworm trixie" in p.stderr
        and "KUBEBUILDER_ASSETS" in p.stderr
    )
    assert not (tmp_path / "cache").exists()


def test_unknown_option_is_refused(tmp_path):
    p = plan(tmp_path, TRIXIE, TRIXIE_SOURCES, "--fast")
    assert p.returncode == 2 and "'--fast'" in p.stderr and "--plan, --fetch-only" in p.stderr


def test_apt_reads_only_bookworm_indexes_from_the_trixie_plan(tmp_path):
    """apt parses the printed list as deb822 and would fetch bookworm's indexes, binaries and sources."""
    apt = shutil.which("apt-get")
    assert apt, "apt-get is part of every Debian this script supports"
    p = plan(tmp_path, TRIXIE, TRIXIE_SOURCES.replace("mirror.example.net", "deb.debian.org"), "--plan")
    parts = tmp_path / "parts"
    (tmp_path / "lists" / "partial").mkdir(parents=True)
    parts.mkdir()
    (parts / "bookworm.sources").write_text(
        "".join(f"{k}: {v}\n" for k, v in private_sources(p.stdout).items())
    )
    opts = [
        *("-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={parts}"),
        *("-o", f"Dir::State::Lists={tmp_path / 'lists'}", "-o", f"Dir::Cache={tmp_path / 'cache'}"),
        *("-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"),
    ]
    run = subprocess.run([apt, *opts, "update", "--print-uris"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    uris = [line.split("'")[1] for line in run.stdout.splitlines() if line.startswith("'")]
    assert uris and all(u.startswith("http://deb.debian.org/debian/dists/bookworm/") for u in uris), uris
    assert any(u.endswith("/main/source/Sources.xz") for u in uris), uris  # deb-src: the kubernetes source
    assert any("/main/binary-" in u for u in uris), uris  # deb: golang-1.19-go and etcd-server
