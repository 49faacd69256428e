"""Issue 22 §2: the team's image is built and pushed when image/ changes, and reaches the stacks only by
digest, through a reviewed pull request that .github/scripts/set_image.py writes.

The script runs on copies of the committed stack files: it changes exactly one line (or adds exactly the
`image` key or the `adaptive-dask:dask` block), every other byte stays, a YAML parser reads the new image and
an otherwise equal config, the program's own loader accepts the result in production, and a second run
changes nothing. The workflow is read as data (triggers, environments, permissions, the hand-off) and its
shell steps are run as written, against stand-ins for `docker`, `aws`, `curl` and the GitHub remote: the
build pushes the tag of the commit and hands `<repository>@sha256:<digest>` (the registry's answer) to
`propose`, which commits only stack files and opens the pull request naming image, digest and files.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from infra.aws.images import IMAGE_NAME
from infra.aws.images import repository_name as program_repository_name
from infra.config.kubernetes import _IMAGE, _image
from infra.config.load import DEFAULT_NAME_PREFIX, stack_name
from infra.config.reader import Field
from infra.errors import ConfigError
from tests.ci.workflows import (
    PR_EVENTS,
    ROOT,
    can_be_true,
    can_run_on,
    load_prod_settings,
    secrets_of,
    steps_using,
    triggers,
)

SCRIPT = ROOT / ".github" / "scripts" / "set_image.py"
WORKFLOW = ROOT / ".github" / "workflows" / "image.yml"
DASK = "adaptive-dask:dask"
SHA = "0123456789abcdef0123456789abcdef01234567"
URL = {
    "dev": "111122223333.dkr.ecr.us-east-1.amazonaws.com/adask-dev/dask",
    "prod": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/adask-prod/dask",
}
REF = f"{URL['dev']}@sha256:{'a' * 64}"
REF2 = f"{URL['dev']}@sha256:{'b' * 64}"
COMMITTED = {p.name.split(".")[1]: p for p in sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))}


@pytest.fixture(scope="module")
def si() -> ModuleType:
    spec = importlib.util.spec_from_file_location("set_image", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def config_of(text: str) -> dict:
    return yaml.safe_load(text)["config"]


def with_repository(text: str) -> str:
    """A committed stack file with `images.repository: true` appended (config is the files' last key)."""
    out = text + "  adaptive-dask:images:\n    repository: true\n"
    assert config_of(out)["adaptive-dask:images"] == {"repository": True}
    return out


def stacks_copy(tmp_path: Path, repository: tuple[str, ...] = ()) -> Path:
    d = tmp_path / "stacks"
    d.mkdir(parents=True)
    for stack, path in COMMITTED.items():
        text = path.read_text()
        (d / path.name).write_text(with_repository(text) if stack in repository else text)
    return d


def main(si: ModuleType, *argv: str) -> int:
    return si.main(list(argv))


# --- the edit -------------------------------------------------------------------------------------------


def test_the_committed_stacks_are_the_cases_below():
    """dev and prod have no dask block (the block is added), local has one without `image` (the key is)."""
    assert {"dev", "prod", "local"} <= set(COMMITTED)
    assert DASK not in config_of(COMMITTED["dev"].read_text())
    assert DASK not in config_of(COMMITTED["prod"].read_text())
    assert "image" not in config_of(COMMITTED["local"].read_text())[DASK]


@pytest.mark.parametrize("stack", sorted(COMMITTED))
def test_sets_the_image_changing_nothing_else(si: ModuleType, stack: str):
    text = COMMITTED[stack].read_text()
    before = config_of(text)
    out, change = si.set_image(f"stacks/{COMMITTED[stack].name}", text, REF)
    old, new = text.splitlines(keepends=True), out.splitlines(keepends=True)
    # only insertions: the old lines, in order, byte for byte
    added = [line for line in new if line not in old]
    assert [line for line in new if line not in added] == old
    expected = copy.deepcopy(before)
    if DASK in before:
        assert change.how == "added the key"
        assert added == [f"    image: {REF}\n"]
        assert new.index(added[0]) == next(i for i, x in enumerate(old) if x.startswith(f"  {DASK}:")) + 1
        expected[DASK] = {"image": REF, **before[DASK]}
    else:
        assert change.how == "added the block"
        assert added == [f"  {DASK}:\n", f"    image: {REF}\n"]
        last = max(i for i, x in enumerate(old) if x.strip() and not x.lstrip().startswith("#"))
        assert new.index(added[0]) == last + 1  # at the end of config:
        expected[DASK] = {"image": REF}
    assert config_of(out) == expected
    assert next(iter(config_of(out)[DASK])) == "image"  # the first key of its block

    # a second, different image: exactly one line differs, and only its value
    again, change = si.set_image("f", out, REF2)
    diff = [(a, b) for a, b in zip(new, again.splitlines(keepends=True), strict=True) if a != b]
    assert diff == [(f"    image: {REF}\n", f"    image: {REF2}\n")]
    assert (change.how, change.old, change.new) == ("replaced", REF, REF2)
    expected[DASK]["image"] = REF2
    assert config_of(again) == expected


@pytest.mark.parametrize("stack", sorted(COMMITTED))
def test_idempotent(si: ModuleType, stack: str, tmp_path: Path):
    d = stacks_copy(tmp_path)
    assert main(si, "--image", REF, "--stack", stack, "--stacks-dir", str(d)) == 0
    once = (d / COMMITTED[stack].name).read_bytes()
    assert main(si, "--image", REF, "--stack", stack, "--stacks-dir", str(d)) == 0
    assert (d / COMMITTED[stack].name).read_bytes() == once
    assert si.set_image("f", once.decode(), REF)[1].how == "unchanged"


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ('    image: "{old}"  # the team image\n', '    image: "{new}"  # the team image\n'),
        ("    image: '{old}'\n", "    image: '{new}'\n"),
        ("    image:   {old}   # spaced\n", "    image:   {new}   # spaced\n"),
        ("    image: ghcr.io/dask/dask:2026.8.0-py3.12\n", "    image: {new}\n"),  # the stock image
    ],
)
def test_replacing_keeps_quotes_and_comments(si: ModuleType, line: str, want: str):
    text = (
        "# top\nconfig:\n  aws:region: eu-west-1\n  adaptive-dask:dask:\n    # why this image\n"
        + line.format(old=REF)
        + "    minWorkers: 0 # idle at zero\n  adaptive-dask:target: aws\n"
    )
    out, _ = si.set_image("f", text, REF2)
    assert out == text.replace(line.format(old=REF), want.format(new=REF2))
    assert config_of(out)[DASK]["image"] == REF2


def test_line_endings_and_a_missing_final_newline_are_kept(si: ModuleType):
    crlf = "config:\r\n  adaptive-dask:target: aws\r\n  adaptive-dask:dask:\r\n    minWorkers: 0\r\n"
    out, _ = si.set_image("f", crlf, REF)
    assert out == crlf.replace("dask:\r\n", f"dask:\r\n    image: {REF}\r\n")
    bare = "config:\n  adaptive-dask:target: aws"
    out, _ = si.set_image("f", bare, REF)
    assert out == f"{bare}\n  {DASK}:\n    image: {REF}\n"
    assert config_of(out)[DASK] == {"image": REF}


def test_writes_the_file_bytes_as_they_were(si: ModuleType, tmp_path: Path):
    d = tmp_path / "stacks"
    d.mkdir()
    (d / "Pulumi.qa.yaml").write_bytes(b"config:\r\n  adaptive-dask:dask:\r\n    image: x:1  # old\r\n")
    assert main(si, "--image", REF, "--stack", "qa", "--stacks-dir", str(d)) == 0
    assert (
        d / "Pulumi.qa.yaml"
    ).read_bytes() == f"config:\r\n  adaptive-dask:dask:\r\n    image: {REF}  # old\r\n".encode()


REFUSED_REFS = [
    (f"{URL['dev']}:{SHA}", "pinned by tag only"),
    (f"{URL['dev']}:latest", "pinned by tag only"),
    (f"{URL['dev']}@sha256:{'a' * 63}", "not an image reference pinned by digest"),
    (f"{URL['dev']}@sha256:{'A' * 64}", "not an image reference pinned by digest"),
    (f"{URL['dev']}@sha512:{'a' * 64}", "not an image reference pinned by digest"),
    (f"{URL['dev']} @sha256:{'a' * 64}", "not an image reference pinned by digest"),
    (f"@sha256:{'a' * 64}", "not an image reference pinned by digest"),
]


@pytest.mark.parametrize(("ref", "says"), REFUSED_REFS)
def test_refuses_a_reference_without_a_digest(si: ModuleType, tmp_path: Path, capsys, ref: str, says: str):
    d = stacks_copy(tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert main(si, "--image", ref, "--stack", "dev", "--stack", "prod", "--stacks-dir", str(d)) == 1
    err = capsys.readouterr().err
    assert f"{d.as_posix()}/Pulumi.dev.yaml: {DASK}.image:" in err and says in err
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_the_program_agrees_on_what_is_pinned_by_digest(si: ModuleType):
    """Every reference the script writes, the program runs in production; every tag-only one the program
    refuses in production, the script refuses too."""
    for ref in (REF, f"{URL['prod']}:{SHA}@sha256:{'c' * 64}", f"localhost:5000/team/dask@sha256:{'d' * 64}"):
        assert si.DIGEST_REF.match(ref) and _IMAGE.match(ref)
        assert _image(Field(f"{DASK}.image", ref), production=True) == ref
    for ref, _ in REFUSED_REFS:
        assert not si.DIGEST_REF.match(ref)
        if _IMAGE.match(ref):
            with pytest.raises(ConfigError):
                _image(Field(f"{DASK}.image", ref), production=True)


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ("stack: dev\n", "config", "cannot find the top-level `config:` mapping"),
        ("config: {}\n", "config", "is written inline"),
        ("  config:\n    adaptive-dask:target: aws\n", "config", "cannot find"),
        ("config:\n  adaptive-dask:dask: {image: x:1}\n", DASK, "is written inline"),
        ("config:\n  adaptive-dask:dask: {}\n", DASK, "is written inline"),
        ("config:\n  adaptive-dask:dask:\n    image: >-\n      x:1\n", f"{DASK}.image", "not a single value"),
        ("config:\n  adaptive-dask:dask:\n    image:\n", f"{DASK}.image", "not a single value"),
        ("config:\n  adaptive-dask:dask:\n    image: &i x:1\n", f"{DASK}.image", "not a single value"),
        (
            "config:\n  adaptive-dask:dask:\n    image: a@sha256:1\n    image: b@sha256:2\n",
            f"{DASK}.image",
            "set 2 times",
        ),
        ("config:\n  adaptive-dask:dask:\n    minWorkers: 0\n  adaptive-dask:dask:\n", DASK, "set 2 times"),
    ],
)
def test_refuses_what_it_cannot_edit_naming_file_and_key(
    si: ModuleType, tmp_path: Path, capsys, text: str, key: str, says: str
):
    d = tmp_path / "stacks"
    d.mkdir()
    (d / "Pulumi.qa.yaml").write_text(text)
    assert main(si, "--image", REF, "--stack", "qa", "--stacks-dir", str(d)) == 1
    err = capsys.readouterr().err
    assert f"{d.as_posix()}/Pulumi.qa.yaml: {key}: " in err and says in err, err
    assert (d / "Pulumi.qa.yaml").read_text() == text


def test_the_program_loads_the_edited_prod_stack(si: ModuleType, tmp_path: Path):
    """The whole config loader (as tests/infra run it) accepts prod with its repository and the digest, and
    the scheduler and workers get that image; in its own process (the Pulumi runtime's globals)."""
    root = tmp_path / "repo"
    stacks_copy(root, repository=("prod",))
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    ref = f"{URL['prod']}@sha256:{'e' * 64}"
    assert main(si, "--image", ref, "--stacks-dir", str(root / "stacks")) == 0  # default: prod only
    assert (
        load_prod_settings(root, "s.production, s.aws.images.repository, s.dask.image") == f"True True {ref}"
    )


# --- which stacks, and their repositories ----------------------------------------------------------------


@pytest.mark.parametrize(
    "images",
    [
        "  adaptive-dask:images:\n    repository: true\n",
        "  adaptive-dask:images:\n    keepImages: 10 # ten\n    repository: True  # yes\n",
        "  adaptive-dask:images:\n    repository: 'true'\n",
        "  adaptive-dask:images: {repository: true, keepImages: 5}\n",
        '  "adaptive-dask:images": {keepImages: 5, "repository": true}\n',
        "  adaptive-dask:images:\n    repository: false\n",
        "  adaptive-dask:images:\n    # repository: true\n    keepImages: 3\n",
        "  # adaptive-dask:images:\n  #   repository: true\n",
        "  adaptive-dask:images: {repository: false}\n",
        "  adaptive-dask:imagesx:\n    repository: true\n",
        "  adaptive-dask:dask:\n    repository: true\n",
    ],
)
def test_default_stacks_are_those_with_a_repository(si: ModuleType, images: str):
    text = "config:\n  adaptive-dask:target: aws\n" + images
    images_cfg = config_of(text).get("adaptive-dask:images") or {}
    says_yaml = str(images_cfg.get("repository")).lower() == "true"
    assert si.has_repository(text) is says_yaml


def test_default_selection_and_named_stacks(si: ModuleType, tmp_path: Path, capsys):
    d = stacks_copy(tmp_path)
    # no committed stack has a repository yet: the default refuses rather than doing nothing quietly
    assert main(si, "--image", REF, "--stacks-dir", str(d)) == 1
    assert "adaptive-dask:images.repository: no stack file sets it to true" in capsys.readouterr().err
    assert main(si, "--image", REF, "--stack", "qa", "--stacks-dir", str(d)) == 1
    assert "no Pulumi.<stack>.yaml for qa" in capsys.readouterr().err
    d2 = stacks_copy(tmp_path / "two", repository=("dev", "prod"))
    assert set(si.choose(d2, [])) == {"dev", "prod"}
    assert main(si, "--image", REF, "--stacks-dir", str(d2)) == 0
    out = capsys.readouterr().out
    assert "`" + (d2 / "Pulumi.dev.yaml").as_posix() + "`" in out and "Pulumi.prod.yaml" in out
    assert "Pulumi.local.yaml" not in out
    assert (d2 / "Pulumi.local.yaml").read_text() == COMMITTED["local"].read_text()
    # --images-json: each stack its own reference
    refs = {"dev": REF2, "prod": f"{URL['prod']}@sha256:{'f' * 64}"}
    assert main(si, "--images-json", json.dumps(refs), "--stacks-dir", str(d2)) == 0
    for stack, ref in refs.items():
        assert config_of((d2 / f"Pulumi.{stack}.yaml").read_text())[DASK]["image"] == ref


def test_repository_names_agree_with_the_program(si: ModuleType):
    assert si.DEFAULT_NAME_PREFIX == DEFAULT_NAME_PREFIX and si.REPOSITORY_IMAGE_NAME == IMAGE_NAME
    for prefix, stack in [
        ("adask", "dev"),
        ("team", "prod_EU.1"),
        ("a" * 20, "s" * 40),
        ("x", "a-" + "b" * 37),
    ]:
        program = program_repository_name(stack_name(Field("adaptive-dask:namePrefix", prefix), stack))
        assert si.repository_name(prefix, stack) == program


def run_repositories(si: ModuleType, d: Path, variables: dict, *stacks: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(SCRIPT), "--repositories", "--stacks-dir", str(d)]
    for s in stacks:
        args += ["--stack", s]
    return subprocess.run(args, input=json.dumps(variables), capture_output=True, text=True, check=False)


def test_each_stack_pushes_to_its_own_repository(si: ModuleType, tmp_path: Path):
    d = stacks_copy(tmp_path, repository=("dev", "prod"))
    good = {"IMAGE_REPOSITORY_URL_DEV": URL["dev"], "IMAGE_REPOSITORY_URL_PROD": URL["prod"], "OTHER": "x"}
    proc = run_repositories(si, d, good)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"dev {URL['dev']}\nprod {URL['prod']}\n"
    # a missing variable, a swapped URL, something that is not ECR: refused, naming the variable
    for variables, says in [
        (
            {"IMAGE_REPOSITORY_URL_DEV": URL["dev"]},
            "IMAGE_REPOSITORY_URL_PROD (environment `image`) is not set",
        ),
        (
            {**good, "IMAGE_REPOSITORY_URL_PROD": URL["dev"]},
            "is not this stack's repository (adask-prod/dask)",
        ),
        ({**good, "IMAGE_REPOSITORY_URL_DEV": "ghcr.io/team/dask"}, "is not an ECR repository URL"),
    ]:
        proc = run_repositories(si, d, variables)
        assert proc.returncode == 1 and says in proc.stderr, proc.stderr
        assert proc.stdout == ""
    # a stack's own namePrefix names its repository
    (d / "Pulumi.dev.yaml").write_text(
        (d / "Pulumi.dev.yaml")
        .read_text()
        .replace("config:\n", "config:\n  adaptive-dask:namePrefix: team\n", 1)
    )
    proc = run_repositories(si, d, {**good, "IMAGE_REPOSITORY_URL_DEV": URL["dev"].replace("adask", "team")})
    assert proc.returncode == 0, proc.stderr
    assert si.variable_name("prod-eu.1") == "IMAGE_REPOSITORY_URL_PROD_EU_1"


# --- the workflow, read -----------------------------------------------------------------------------------


def step(job: dict, name: str) -> dict:
    (found,) = [s for s in job["steps"] if name in str(s.get("name", ""))]
    return found


def test_triggers_image_changes_on_main_and_manual_runs_only(wf):
    on = triggers(wf)
    assert set(on) == {"push", "workflow_dispatch"}
    assert on["push"] == {"branches": ["main"], "paths": ["image/**"]}
    assert not set(PR_EVENTS) & set(on)
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["cancel-in-progress"] is False
    for name in wf["jobs"]:
        assert not any(can_run_on(wf, name, e) for e in PR_EVENTS)


def test_build_runs_on_main_in_its_environment_and_alone_holds_an_oidc_token(wf):
    build = wf["jobs"]["build"]
    assert "github.ref == 'refs/heads/main'" in build["if"]
    for event in ("push", "workflow_dispatch"):
        assert can_be_true(build["if"], event)
    assert build["environment"] == "image"
    assert build["permissions"] == {"contents": "read", "id-token": "write"}
    (aws,) = steps_using(build, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_IMAGE_ROLE_ARN }}"
    names = [s.get("name") or s.get("uses") for s in build["steps"]]
    # the Dockerfile's RUN steps (package installs) run before any AWS credentials exist in the job
    assert names.index(step(build, "Build image/")["name"]) < names.index(aws["uses"])
    assert names.index(aws["uses"]) < names.index(step(build, "Push")["name"])
    assert not secrets_of(build)
    for name, job in wf["jobs"].items():
        if name != "build":
            assert "id-token" not in job.get("permissions", {}), name
            assert not steps_using(job, "aws-actions/configure-aws-credentials"), name
    text = WORKFLOW.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "aws-secret-access-key" not in text


def test_build_pushes_the_commit_tag_and_hands_a_digest_to_propose(wf):
    build, propose = wf["jobs"]["build"], wf["jobs"]["propose"]
    run = step(build, "Build image/")["run"]
    assert re.search(r"docker build --platform linux/amd64\b", run) and run.rstrip().endswith(" image/")
    push = step(build, "Push")
    assert 'docker push "${url}:${GITHUB_SHA}"' in push["run"]
    assert "imageTag=${GITHUB_SHA}" in push["run"] and "^sha256:[0-9a-f]{64}$" in push["run"]
    assert build["outputs"]["images"] == f"${{{{ steps.{push['id']}.outputs.images }}}}"
    assert propose["needs"] == ["build"]
    handoff = step(propose, "set_image.py")
    assert handoff["env"]["IMAGES"] == "${{ needs.build.outputs.images }}"
    assert '--images-json "$IMAGES"' in handoff["run"]


def test_propose_has_no_environment_no_secret_no_aws(wf):
    propose = wf["jobs"]["propose"]
    assert "environment" not in propose
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert not secrets_of(propose)
    assert not steps_using(propose, "aws-actions/configure-aws-credentials")
    pr = step(propose, "pull request")
    assert pr["env"]["BRANCH"] == "image/${{ github.sha }}"
    assert pr["if"] == "steps.set.outputs.changed == 'true'"


def test_no_expression_expands_inside_a_shell_line(wf):
    for name, job in wf["jobs"].items():
        for s in job["steps"]:
            assert "${{" not in str(s.get("run", "")), (name, s.get("name"))
            assert s.get("with", {}).get("persist-credentials", False) is False


# --- the workflow, run ------------------------------------------------------------------------------------

AWS_STUB = r"""#!/bin/bash
echo "aws $*" >> "$STUB_DIR/log"
name=""; prev=""
for a in "$@"; do [ "$prev" = "--repository-name" ] && name="$a"; prev="$a"; done
case "$1 $2" in
  "ecr get-login-password") echo "ecr-token" ;;
  "ecr describe-images")
    if [ -n "${STUB_DENY:-}" ]; then
      echo "An error occurred (AccessDeniedException) when calling the DescribeImages operation" >&2
      exit 254
    fi
    if [ -f "$STUB_DIR/pushed-${name//\//_}" ] || [ -n "${STUB_EXISTING:-}" ]; then
      printf 'sha256:%s\n' "$(printf '%s' "$name" | sha256sum | cut -c1-64)"
    else
      echo "An error occurred (ImageNotFoundException) when calling the DescribeImages operation" >&2
      exit 254
    fi ;;
  *) exit 2 ;;
esac
"""

DOCKER_STUB = r"""#!/bin/bash
echo "docker $*" >> "$STUB_DIR/log"
case "$1" in
  login) [ "$(cat)" = "ecr-token" ] || exit 3 ;;
  push) ref="${2#*/}"; ref="${ref%:*}"; touch "$STUB_DIR/pushed-${ref//\//_}" ;;
esac
"""

CURL_STUB = r"""#!/bin/bash
echo "curl $*" >> "$STUB_DIR/log"
method=GET; data=""
while [ $# -gt 0 ]; do
  case "$1" in -X) method="$2"; shift ;; -d) data="${2#@}"; shift ;; esac; shift
done
if [ "$method" = GET ]; then echo "${STUB_OPEN_PRS:-[]}"; else cp "$data" "$STUB_DIR/pr-$method.json"; fi
"""


def digest_of(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class Runner:
    """A checkout of the repository (a real git work tree) with stand-in commands, running a workflow step's
    `run` the way Actions does (bash -e -o pipefail) with the step's env filled in by the test."""

    def __init__(self, tmp_path: Path, repository: tuple[str, ...]) -> None:
        self.work, self.stub, self.temp = tmp_path / "work", tmp_path / "stub", tmp_path / "runner-temp"
        for d in (self.work, self.stub / "bin", self.temp):
            d.mkdir(parents=True)
        (self.work / ".github" / "scripts").mkdir(parents=True)
        shutil.copy(SCRIPT, self.work / ".github" / "scripts" / SCRIPT.name)
        stacks_copy(self.work, repository)
        for name, text in (("aws", AWS_STUB), ("docker", DOCKER_STUB), ("curl", CURL_STUB)):
            (self.stub / "bin" / name).write_text(text)
            (self.stub / "bin" / name).chmod(0o755)
        self.remote = tmp_path / "remote.git"
        self.git("init", "-q", "--bare", str(self.remote), cwd=tmp_path)
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
        self.output = self.temp / "output"
        self.summary = self.temp / "summary"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd or self.work, check=True, capture_output=True, text=True
        ).stdout

    def run(self, s: dict, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
        self.output.write_text("")
        script = self.temp / "step.sh"
        script.write_text(s["run"])
        token_url = "https://x-access-token:tok@github.com/owner/repo.git"
        full = {
            "PATH": f"{self.stub / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.temp),
            "STUB_DIR": str(self.stub),
            "RUNNER_TEMP": str(self.temp),
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_SHA": SHA,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "owner/repo",
            # the push goes to a local bare repository instead of GitHub
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"url.{self.remote}.insteadOf",
            "GIT_CONFIG_VALUE_0": token_url,
            **env,
            **extra,
        }
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)],
            cwd=self.work,
            env=full,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.output.read_text().splitlines() if "=" in line)

    def log(self) -> list[str]:
        path = self.stub / "log"
        return path.read_text().splitlines() if path.exists() else []


VARIABLES = {
    "IMAGE_REPOSITORY_URL_DEV": URL["dev"],
    "IMAGE_REPOSITORY_URL_PROD": URL["prod"],
    "AWS_REGION": "x",
}


def run_build(wf: dict, r: Runner, **extra: str) -> subprocess.CompletedProcess:
    build = wf["jobs"]["build"]
    proc = r.run(step(build, "repositories"), {"VARS_JSON": json.dumps(VARIABLES)})
    assert proc.returncode == 0, proc.stderr
    proc = r.run(step(build, "Build image/"), {})
    assert proc.returncode == 0, proc.stderr
    return r.run(step(build, "Push"), {}, **extra)


def test_build_job_pushes_each_stack_and_hands_over_the_registrys_digests(wf, tmp_path: Path):
    r = Runner(tmp_path, repository=("dev", "prod"))
    proc = run_build(wf, r)
    assert proc.returncode == 0, proc.stderr
    images = json.loads(r.outputs()["images"])
    assert images == {s: f"{URL[s]}@{digest_of(URL[s].split('/', 1)[1])}" for s in ("dev", "prod")}
    log = r.log()
    (build,) = [x for x in log if x.startswith("docker build")]
    assert "--platform linux/amd64" in build and build.endswith(f"--tag team-dask:{SHA} image/")
    for stack in ("dev", "prod"):
        registry, region = URL[stack].split("/")[0], URL[stack].split(".")[3]
        # `aws ecr get-login-password | docker login`: the two run at once, so either may log first
        login = log.index(f"docker login --username AWS --password-stdin {registry}")
        assert f"aws ecr get-login-password --region {region}" in log[login - 1 : login + 2]
        push = log.index(f"docker push {URL[stack]}:{SHA}")
        assert login < push and f"docker tag team-dask:{SHA} {URL[stack]}:{SHA}" in log[login:push]
    assert images["dev"] in r.summary.read_text()


def test_a_rerun_proposes_the_pushed_image_and_pushes_nothing(wf, tmp_path: Path):
    r = Runner(tmp_path, repository=("dev",))
    proc = run_build(wf, r, STUB_EXISTING="1")
    assert proc.returncode == 0, proc.stderr
    assert not [x for x in r.log() if x.startswith(("docker push", "docker tag"))]
    assert json.loads(r.outputs()["images"]) == {"dev": f"{URL['dev']}@{digest_of('adask-dev/dask')}"}
    assert "was pushed before" in proc.stdout


def test_a_registry_error_stops_the_build_before_any_push(wf, tmp_path: Path):
    r = Runner(tmp_path, repository=("dev",))
    proc = run_build(wf, r, STUB_DENY="1")
    assert proc.returncode != 0 and "AccessDeniedException" in proc.stderr
    assert not [x for x in r.log() if x.startswith("docker push")]
    assert "images" not in r.outputs()


def test_propose_job_commits_the_stack_files_and_opens_the_pull_request(wf, tmp_path: Path):
    r = Runner(tmp_path, repository=("dev", "prod"))
    assert run_build(wf, r).returncode == 0
    images = r.outputs()["images"]
    propose = wf["jobs"]["propose"]
    proc = r.run(step(propose, "set_image.py"), {"IMAGES": images})
    assert proc.returncode == 0, proc.stderr
    assert r.outputs() == {"changed": "true"}
    pr_env = {
        "GH_TOKEN": "tok",
        "REPO": "owner/repo",
        "OWNER": "owner",
        "BRANCH": f"image/{SHA}",
        "RUN_URL": "https://github.com/owner/repo/actions/runs/1",
    }
    proc = r.run(step(propose, "pull request"), pr_env)
    assert proc.returncode == 0, proc.stderr
    # the branch holds one commit on top of the checkout, touching exactly the two stack files
    remote = ("--git-dir", str(r.remote))
    parent = r.git(*remote, "rev-parse", f"image/{SHA}~1", cwd=tmp_path)
    assert parent == r.git("rev-parse", "main")
    files = r.git(*remote, "diff", "--name-only", f"image/{SHA}~1", f"image/{SHA}", cwd=tmp_path)
    assert files.split() == ["stacks/Pulumi.dev.yaml", "stacks/Pulumi.prod.yaml"]
    pr = json.loads((r.stub / "pr-POST.json").read_text())
    assert (pr["head"], pr["base"]) == (f"image/{SHA}", "main")
    for stack, ref in json.loads(images).items():
        assert ref in pr["body"] and f"stacks/Pulumi.{stack}.yaml" in pr["body"]
        assert ref.split("@")[1] in pr["body"]  # the digest itself
    assert SHA in pr["body"] and "close and reopen it" in pr["body"]
    # the same run again (a re-run on a fresh checkout): the open pull request is refreshed, not doubled
    r2 = Runner(tmp_path / "again", repository=("dev", "prod"))
    r2.remote = r.remote
    assert r2.run(step(propose, "set_image.py"), {"IMAGES": images}).returncode == 0
    proc = r2.run(step(propose, "pull request"), pr_env, STUB_OPEN_PRS='[{"number": 7}]')
    assert proc.returncode == 0, proc.stderr
    patch = json.loads((r2.stub / "pr-PATCH.json").read_text())
    assert "head" not in patch and ref in patch["body"]
    assert any(x.startswith("curl -fsS -X PATCH") and x.split()[-3].endswith("/pulls/7") for x in r2.log())


def test_propose_does_nothing_when_the_stacks_already_run_the_image(wf, tmp_path: Path):
    r = Runner(tmp_path, repository=("dev",))
    images = json.dumps({"dev": REF})
    subprocess.run(
        [sys.executable, str(SCRIPT), "--images-json", images], cwd=r.work, check=True, capture_output=True
    )
    r.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "merged")
    proc = r.run(step(wf["jobs"]["propose"], "set_image.py"), {"IMAGES": images})
    assert proc.returncode == 0, proc.stderr
    assert r.outputs() == {"changed": "false"}
    assert "no change" in r.summary.read_text()
