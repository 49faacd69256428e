"""The CI workflow is code too: parse it and check the properties a deploy pipeline must never lose.

Nothing here runs GitHub; it checks the file's structure (gating, permissions, pins, stack coverage)
and runs the exact stack-listing script the workflow's matrix job runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.ci.workflows import (
    ROOT,
    WORKFLOW,
    WORKFLOWS,
    needs,
    parse_outputs,
    run_lister,
    steps_using,
    triggers,
)

SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def wf() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict) and isinstance(data.get("jobs"), dict)
    return data


def pulumi_jobs(wf: dict) -> dict[str, dict]:
    return {n: j for n, j in wf["jobs"].items() if steps_using(j, "pulumi/actions")}


def upstream(wf: dict, name: str) -> set[str]:
    """Every job `name` transitively waits for."""
    seen: set[str] = set()
    todo = needs(wf["jobs"][name])
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(needs(wf["jobs"][j]))
    return seen


def parse_output(stdout: str) -> list[str]:
    """Every stack the script lists for CI (pull-request and main-only previews together)."""
    out = parse_outputs(stdout)
    return sorted(out["stacks"] + out["strict"])


# --- stack coverage ---------------------------------------------------------------------------


def target(path: Path) -> str:
    return ((yaml.safe_load(path.read_text()) or {}).get("config") or {}).get("adaptive-dask:target", "aws")


def test_lister_covers_every_committed_stack_file():
    files = {p.name[len("Pulumi.") : -len(".yaml")]: p for p in (ROOT / "stacks").glob("Pulumi.*.yaml")}
    assert files, "stacks/ holds no Pulumi.<stack>.yaml"
    proc = run_lister(ROOT / "stacks")
    assert proc.returncode == 0, proc.stderr
    previewed = parse_output(proc.stdout)
    left_out = {s for s, p in files.items() if target(p) == "local"}
    # every stack file is either previewed or a local-target stack (no cloud, no CI kube context)
    assert sorted(previewed) == sorted(set(files) - left_out)
    assert {"dev", "prod"} <= set(previewed)
    split = parse_outputs(proc.stdout)
    assert "prod" in split["strict"] and "dev" in split["stacks"]  # prod never in the pull-request list
    assert not set(split["stacks"]) & set(split["strict"])
    for stack in left_out:
        assert stack in proc.stderr


def test_lister_on_edge_cases(tmp_path: Path):
    aws = "config:\n  adaptive-dask:target: aws\n"
    for name in ["Pulumi.dev.yaml", "Pulumi.prod-eu.yaml", "Pulumi.qa.yml", "Pulumi.yaml", "README.md"]:
        (tmp_path / name).write_text(aws)
    (tmp_path / "Pulumi.dir.yaml").mkdir()
    (tmp_path / "Pulumi.dev.yml").write_text("")  # same stack twice -> listed once
    (tmp_path / "Pulumi.bare.yaml").write_text("config: {}\n")  # target defaults to aws
    (tmp_path / "Pulumi.laptop.yaml").write_text("config:\n  adaptive-dask:target: 'local'  # kind\n")
    (tmp_path / "Pulumi.cloud.yaml").write_text("config:\n  # adaptive-dask:target: local\n")
    proc = run_lister(tmp_path)
    assert proc.returncode == 0
    assert parse_output(proc.stdout) == ["bare", "cloud", "dev", "prod-eu", "qa"]
    assert parse_outputs(proc.stdout)["strict"] == ["prod-eu"]  # a prod- name is strict
    assert "laptop" in proc.stderr
    # one line of `key=value` per output, as $GITHUB_OUTPUT requires
    assert proc.stdout.count("\n") == 2
    for p in tmp_path.glob("Pulumi.*.y*ml"):
        if p.is_file() and p.stem != "Pulumi":
            listed = p.name.split(".")[1] in parse_output(proc.stdout)
            assert listed == (target(p) != "local"), p.name  # the script agrees with a YAML parser


def test_lister_fails_loudly_on_no_stacks(tmp_path: Path):
    proc = run_lister(tmp_path)
    assert proc.returncode == 1 and "no cloud Pulumi.<stack>.yaml" in proc.stderr
    assert run_lister(tmp_path / "missing").returncode == 1
    (tmp_path / "Pulumi.laptop.yaml").write_text("config:\n  adaptive-dask:target: local\n")
    assert run_lister(tmp_path).returncode == 1  # only local stacks: nothing to preview is an error


def test_matrix_is_the_listing_job_output(wf):
    stacks_job = wf["jobs"]["stacks"]
    (step,) = [s for s in stacks_job["steps"] if "list_stacks.py" in str(s.get("run", ""))]
    assert re.search(r"\.github/scripts/list_stacks\.py\s+stacks\b", step["run"])
    assert '>> "$GITHUB_OUTPUT"' in step["run"]
    for key in ("stacks", "strict"):
        assert stacks_job["outputs"][key] == f"${{{{ steps.{step['id']}.outputs.{key} }}}}"
    preview = wf["jobs"]["preview"]
    assert "stacks" in needs(preview)
    assert preview["strategy"]["matrix"] == {"stack": "${{ fromJSON(needs.stacks.outputs.stacks) }}"}
    strict = wf["jobs"]["preview-strict"]
    assert "stacks" in needs(strict)
    assert strict["strategy"]["matrix"] == {"stack": "${{ fromJSON(needs.stacks.outputs.strict) }}"}
    for job in (preview, strict):
        (pulumi,) = steps_using(job, "pulumi/actions")
        assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
        assert pulumi["with"]["command"] == "preview"


def test_named_deploy_stacks_exist():
    for stack in ("dev", "prod"):
        assert (ROOT / "stacks" / f"Pulumi.{stack}.yaml").is_file(), stack


# --- triggers and gating ----------------------------------------------------------------------


def test_triggers(wf):
    on = triggers(wf)
    assert "pull_request" in on
    assert on["push"]["branches"] == ["main"]
    assert all(t.startswith("v") for t in on["push"]["tags"])
    assert "workflow_dispatch" in on


def test_test_job_runs_the_readme_command(wf):
    runs = [s.get("run", "") for s in wf["jobs"]["test"]["steps"]]
    assert "bash .ci/run" in runs
    # build.sh needs Debian 12 or 13 (it refuses Ubuntu); the hosted runner is Ubuntu
    assert "bookworm" in wf["jobs"]["test"]["container"]


def test_test_job_gates_every_pulumi_job(wf):
    jobs = pulumi_jobs(wf)
    assert set(jobs) == {"preview", "preview-strict", "deploy-dev", "deploy-prod"}
    for name in jobs:
        assert "test" in upstream(wf, name), name
        cond = str(wf["jobs"][name].get("if", ""))
        # a status function (always(), failure(), ...) would let a red test suite deploy
        assert not re.search(r"\b(always|failure|cancelled)\(\)", cond), name


def test_deploy_targets_and_conditions(wf):
    commands = {}
    for name, job in pulumi_jobs(wf).items():
        (step,) = steps_using(job, "pulumi/actions")
        commands[name] = (step["with"]["command"], step["with"]["stack-name"])
    assert commands["deploy-dev"] == ("up", "dev")
    assert commands["deploy-prod"] == ("up", "prod")
    assert commands["preview"][0] == "preview"
    dev_if = wf["jobs"]["deploy-dev"]["if"]
    assert "github.event_name == 'push'" in dev_if and "refs/heads/main" in dev_if
    prod_if = wf["jobs"]["deploy-prod"]["if"]
    assert "pull_request" not in prod_if
    assert "refs/tags/v" in prod_if and "workflow_dispatch" in prod_if
    assert "github.event_name == 'pull_request'" in wf["jobs"]["preview"]["if"]
    assert commands["preview-strict"][0] == "preview"
    strict_if = wf["jobs"]["preview-strict"]["if"]
    assert "github.event_name == 'push'" in strict_if and "refs/heads/main" in strict_if


def test_prod_deploys_only_through_its_environment(wf):
    assert wf["jobs"]["deploy-prod"]["environment"] == "prod"
    for name, job in pulumi_jobs(wf).items():
        (step,) = steps_using(job, "pulumi/actions")
        if step["with"]["stack-name"] == "prod" and step["with"]["command"] != "preview":
            assert job.get("environment") == "prod", name


def test_concurrency_is_per_stack(wf):
    jobs = wf["jobs"]
    assert "matrix.stack" in jobs["preview"]["concurrency"]["group"]
    for name, stack in (("deploy-dev", "dev"), ("deploy-prod", "prod")):
        conc = jobs[name]["concurrency"]
        assert conc["group"].endswith(stack)
        assert conc["cancel-in-progress"] is False  # an interrupted `up` leaves a locked, half-done stack
    assert jobs["deploy-dev"]["concurrency"]["group"] != jobs["deploy-prod"]["concurrency"]["group"]


# --- permissions, credentials, state ----------------------------------------------------------


def test_permissions_are_least(wf):
    assert wf["permissions"] == {"contents": "read"}
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all", name
        uses_aws = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        assert (perms.get("id-token") == "write") == uses_aws, name
        assert perms.get("pull-requests") in (None, "write" if name == "preview" else None), name
        assert perms.get("contents", "read") == "read", name


def test_aws_only_through_oidc(wf):
    text = WORKFLOW.read_text()
    assert "AWS_ACCESS_KEY_ID" not in text and "aws-secret-access-key" not in text
    for name, job in pulumi_jobs(wf).items():
        (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
        assert aws["with"]["role-to-assume"].startswith("${{ vars."), name
        step_names = [s.get("uses", "") for s in job["steps"]]
        assert step_names.index(aws["uses"]) < step_names.index(steps_using(job, "pulumi/actions")[0]["uses"])


# STS limits for AssumeRoleWithWebIdentity: at least 15 minutes, at most the role's MaxSessionDuration
# (<= 12 h).
MIN_SESSION_S, MAX_SESSION_S = 900, 43200


@pytest.mark.parametrize(
    "path", sorted((ROOT / ".github" / "workflows").glob("*.y*ml")), ids=lambda p: p.name
)
def test_aws_credentials_outlive_their_job(path: Path):
    """The default session is 1 hour; an `up` allowed 90-120 minutes would lose its credentials mid-update
    and leave the stack locked. Every credentials step asks for at least its job's whole timeout."""
    for name, job in yaml.safe_load(path.read_text())["jobs"].items():
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert isinstance(job.get("timeout-minutes"), int), f"{name}: timeout-minutes must be set"
            duration = step["with"].get("role-duration-seconds")
            assert isinstance(duration, int), f"{name}: role-duration-seconds must be set (default 3600)"
            assert duration >= job["timeout-minutes"] * 60, (name, duration, job["timeout-minutes"])
            assert MIN_SESSION_S <= duration <= MAX_SESSION_S, (name, duration)


def test_state_backend_and_policy_pack(wf):
    assert wf["env"]["PULUMI_STATE_URL"].startswith("s3://")
    for name, job in pulumi_jobs(wf).items():
        (step,) = steps_using(job, "pulumi/actions")
        assert step["with"]["cloud-url"] == "${{ env.PULUMI_STATE_URL }}", name
        assert step["with"]["policyPacks"] == "policy", name
        assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}", name
        # the pack's own virtualenv (PulumiPolicy.yaml runtime.options.virtualenv) is built first
        assert any("policy/requirements.txt" in str(s.get("run", "")) for s in job["steps"]), name
    assert steps_using(wf["jobs"]["preview"], "pulumi/actions")[0]["with"]["comment-on-pr"] is True
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()


def test_cli_version_matches_sdk_pin(wf):
    pins = dict(
        line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line
    )
    assert wf["env"]["PULUMI_VERSION"] == pins["pulumi"]


# --- supply chain -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_tag(path: Path):
    uses_lines = [ln for ln in path.read_text().splitlines() if re.match(r"^\s*(-\s*)?uses:", ln)]
    assert uses_lines
    for ln in uses_lines:
        ref, _, comment = ln.split("uses:", 1)[1].partition("#")
        assert SHA_PIN.match(ref.strip()), ln
        assert re.fullmatch(r"\s*v\d+\.\d+\.\d+\s*", comment), f"missing exact tag comment: {ln}"


# The first release line of each action that runs on Node 24 (action.yml `runs.using: node24`), read from
# the actions' own repositories; GitHub retires Node 20 on its runners. A new action must be added here on
# purpose.
FIRST_NODE24_MAJOR = {
    "actions/checkout": 5,
    "actions/cache": 5,
    "actions/setup-python": 6,
    "aws-actions/configure-aws-credentials": 6,
    "pulumi/actions": 7,
}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_run_on_node24(path: Path):
    for m in re.finditer(r"uses:\s*([^@\s]+)@[0-9a-f]{40}\s*#\s*v(\d+)\.", path.read_text()):
        action = "/".join(m[1].split("/")[:2])
        assert action in FIRST_NODE24_MAJOR, f"{action}: which release runs on Node 24? add it to the table"
        assert int(m[2]) >= FIRST_NODE24_MAJOR[action], f"{m[1]} v{m[2]} still runs on Node 20"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_container_images_are_pinned_by_digest(path: Path):
    """A tag can be re-pushed; a digest names one image. Tag kept for the reader, digest for the runner."""
    images = [j["container"] for j in yaml.safe_load(path.read_text())["jobs"].values() if "container" in j]
    for image in images:
        ref = image["image"] if isinstance(image, dict) else image
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", ref), ref


def test_same_action_same_pin():
    pins: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for m in re.finditer(r"uses:\s*([^@\s]+)@([0-9a-f]{40})", path.read_text()):
            pins.setdefault(m[1], set()).add(m[2])
    assert pins and all(len(v) == 1 for v in pins.values()), pins


def test_policy_pack_venv_installs_only_hashed_locked_files(wf):
    for name, job in pulumi_jobs(wf).items():
        (run,) = [s["run"] for s in job["steps"] if "policy/requirements.txt" in str(s.get("run", ""))]
        assert "--require-hashes -r policy/requirements.txt" in run, name


# --- the weekly lock refresh (issue 25) ---------------------------------------------------------


def test_lock_refresh_proposes_only_a_tested_lock():
    refresh = yaml.safe_load((ROOT / ".github" / "workflows" / "lock-refresh.yml").read_text())
    assert "schedule" in triggers(refresh) and "workflow_dispatch" in triggers(refresh)
    assert refresh["permissions"] == {"contents": "read"}
    (job,) = refresh["jobs"].values()
    runs = [str(s.get("run", "")) for s in job["steps"]]
    relock = next(i for i, r in enumerate(runs) if "bash .ci/lock --upgrade" in r)
    suite = next(i for i, r in enumerate(runs) if r.strip() == "bash .ci/run")
    propose = next(i for i, r in enumerate(runs) if "/pulls" in r)
    assert relock < suite < propose  # the pull request is opened only after the suite passed on the lock
    # ... and a red suite stops the job: nothing lets a failed step through to the proposal
    assert not any(s.get("continue-on-error") for s in job["steps"][: propose + 1])
    assert not re.search(r"\b(always|failure|cancelled)\(\)", str(job["steps"][propose].get("if", "")))
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert job["container"] == wf_test_container()
    for step in job["steps"]:  # no expression expands inside a shell line (template injection)
        assert "${{" not in str(step.get("run", "")), step


def wf_test_container() -> str:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["test"]["container"]
