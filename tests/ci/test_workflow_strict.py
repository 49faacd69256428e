"""Issue 20 item 7: no job that a branch pusher controls can read a strict stack's secrets.

A pull request runs its author's code, and the passphrase in its job's environment decrypts every secret in
the stacks it opens (the CA key among them). So, read from the parsed workflow: no job a `pull_request` can
start names a strict stack, a strict (or deploy) environment, or a secret outside an environment; strict
stacks are previewed only in jobs a pull request cannot start; and the listing script that builds the
matrices calls a stack strict exactly when the policy pack's `is_strict` does (or, when unsure, more often).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.ci.workflows import (
    LISTER,
    PR_EVENTS,
    ROOT,
    SECRET_REF,
    STRICT_CONFIG_KEY,
    WORKFLOW,
    can_be_true,
    can_run_on,
    is_strict,
    literal_environment,
    parse_outputs,
    run_lister,
    secrets_of,
    steps_using,
)


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def lister() -> ModuleType:
    spec = importlib.util.spec_from_file_location("list_stacks", LISTER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- "can this job run on that event?" from its `if` --------------------------------------------------


def pr_jobs(wf: dict) -> dict[str, dict]:
    return {n: j for n, j in wf["jobs"].items() if any(can_run_on(wf, n, e) for e in PR_EVENTS)}


@pytest.mark.parametrize(
    ("condition", "event", "expected"),
    [
        ("github.event_name == 'push' && github.ref == 'refs/heads/main'", "pull_request", False),
        ("github.event_name == 'push' && github.ref == 'refs/heads/main'", "push", True),
        ("!(github.event_name == 'pull_request')", "pull_request", False),
        ("github.event_name != 'push' || startsWith(github.ref, 'refs/tags/v')", "pull_request", True),
        ("${{ github.event_name == 'workflow_dispatch' || x.y == 'z' }}", "pull_request", True),
        (
            "(github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')) || "
            "(github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main')",
            "pull_request",
            False,
        ),
        ("needs.stacks.outputs.strict != '[]' && github.event_name == 'push'", "pull_request", False),
        ("true", "pull_request", True),
    ],
)
def test_condition_reader(condition: str, event: str, expected: bool):
    assert can_be_true(condition, event) is expected


# --- the workflow ---------------------------------------------------------------------------------------


def committed_stacks() -> dict[str, dict]:
    """Stack -> its config as the CLI hands it to the pack (strings), for every committed stack file."""
    out = {}
    for p in (ROOT / "stacks").glob("Pulumi.*.y*ml"):
        out[p.name.split(".")[1]] = cli_config(p.read_text())
    return out


def cli_config(text: str) -> dict[str, str]:
    """The stack file's config values as strings, the way PULUMI_CONFIG carries them (true -> "true")."""
    config = (yaml.safe_load(text) or {}).get("config") or {}
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in config.items()}


def test_pull_request_jobs_exist(wf):
    # the checks below are about these jobs; an empty set would pass them all vacuously
    assert {"test", "stacks", "preview"} <= set(pr_jobs(wf))
    assert not {"preview-strict", "deploy-dev", "deploy-prod"} & set(pr_jobs(wf))


def test_no_pull_request_job_gets_a_strict_stack(wf):
    listed = parse_outputs(run_lister(ROOT / "stacks").stdout)
    config = committed_stacks()
    assert listed["stacks"] and not [s for s in listed["stacks"] if is_strict(s, config[s])]
    for name, job in pr_jobs(wf).items():
        for step in steps_using(job, "pulumi/actions"):
            stack = step["with"]["stack-name"]
            if stack == "${{ matrix.stack }}":
                # the matrix may only be the listing's non-strict output, never `strict` nor a typed list
                assert job["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.stacks) }}", (
                    name
                )
            else:
                assert "${{" not in stack and not is_strict(stack, config.get(stack)), (name, stack)


def deploy_environments(wf: dict) -> set[str]:
    """Environments of jobs a pull request cannot start (deploys, strict previews): a PR job may use none."""
    return {
        str(job["environment"])
        for n, job in wf["jobs"].items()
        if "environment" in job and n not in pr_jobs(wf)
    }


def test_no_pull_request_job_gets_a_strict_or_deploy_environment(wf):
    for name, job in pr_jobs(wf).items():
        if "environment" not in job:
            continue
        env = literal_environment(job)
        assert env and "${{" not in env, f"{name}: a PR job's environment must be a fixed name, got {env!r}"
        assert not is_strict(env), (name, env)
        # `dev` holds the dev deploy role (trusting environment:dev): not for code nobody reviewed
        assert env not in deploy_environments(wf), (name, env)


def test_secrets_only_inside_environments(wf):
    """A repository secret is readable by any workflow on any branch; an environment secret only by jobs the
    environment's deployment-branch rule admits. So every job that names a secret names its environment."""
    assert not SECRET_REF.search(yaml.safe_dump(wf.get("env", {}))), "workflow-level env must hold no secret"
    users = {n: secrets_of(j) for n, j in wf["jobs"].items() if secrets_of(j)}
    assert {n for n, s in users.items() if "PULUMI_CONFIG_PASSPHRASE" in s} >= {
        "preview",
        "preview-strict",
        "deploy-dev",
        "deploy-prod",
    }
    for name in users:
        assert wf["jobs"][name].get("environment"), f"{name} reads {users[name]} without an environment"


def test_strict_stacks_previewed_only_where_no_pull_request_runs(wf):
    config = committed_stacks()
    strict_jobs = []
    for name, job in wf["jobs"].items():
        for step in steps_using(job, "pulumi/actions"):
            stack = step["with"]["stack-name"]
            matrix = str(job.get("strategy", {}).get("matrix", {}).get("stack", ""))
            if "outputs.strict" in matrix or ("${{" not in stack and is_strict(stack, config.get(stack))):
                strict_jobs.append(name)
                for event in PR_EVENTS:
                    assert not can_run_on(wf, name, event), f"{name} can run on {event}"
                assert not can_be_true(str(job.get("if", "true")), "pull_request"), name
                env = str(job.get("environment"))
                assert env in ("prod", "${{ matrix.stack }}-preview"), (name, env)
    assert {"preview-strict", "deploy-prod"} <= set(strict_jobs)
    # the strict previews run from main only, in each stack's own environment (prod -> prod-preview)
    preview = wf["jobs"]["preview-strict"]
    assert can_run_on(wf, "preview-strict", "push")
    assert not can_run_on(wf, "preview-strict", "workflow_dispatch")
    assert "refs/heads/main" in preview["if"]
    assert is_strict(str(preview["environment"]).replace("${{ matrix.stack }}", "prod"))


# --- the listing script and the policy pack agree -------------------------------------------------------

# (stack name, stack file text): the script must answer exactly as is_strict does on the CLI's config.
AGREE = [
    ("dev", "config:\n  adaptive-dask:production: false\n"),
    ("dev", "config:\n  adaptive-dask:production: true\n"),
    ("dev", "config:\n  adaptive-dask:production: True  # yes, really\n"),
    ("dev", "config:\n  adaptive-dask:production: 'true'\n"),
    ("dev", 'config:\n  "adaptive-dask:production": "TRUE"\n'),
    ("dev", "config:\n  adaptive-dask:production: 'false'\n"),
    ("dev", "config:\n  adaptive-dask:production: FALSE\n"),
    ("dev", "config:\n  adaptive-dask:production: no\n"),
    ("dev", "config:\n  adaptive-dask:production: yes\n"),  # YAML 1.1 true
    ("dev", "config:\n  # adaptive-dask:production: true\n  adaptive-dask:target: aws\n"),
    ("dev", "config:\n  adaptive-dask:productionish: true\n"),
    ("dev", "config: {}\n"),
    ("dev", ""),
    ("qa", "config:\n  adaptive-dask:tags:\n    Environment: production\n"),
    ("prod", "config:\n  adaptive-dask:production: false\n"),  # config cannot relax a prod name
    ("production", "config: {}\n"),
    ("Prod", "config: {}\n"),
    ("PRODUCTION_EU", "config: {}\n"),
    ("prod-eu", "config: {}\n"),
    ("prod_eu", "config: {}\n"),
    ("production-us", "config: {}\n"),
    ("prodx", "config: {}\n"),
    ("preprod", "config: {}\n"),
    ("dev-prod", "config: {}\n"),
    ("products", "config:\n  adaptive-dask:production: false\n"),
    ("staging", "config:\n  aws:region: eu-west-1\n  adaptive-dask:production: true\n"),
]

# Where the file is not a plain true/false the pack never sees (the program refuses it), the script errs
# towards strict: a stack wrongly called strict is previewed on main, one wrongly called relaxed would leak.
FAIL_CLOSED = [
    ("dev", "config:\n  adaptive-dask:production: maybe\n"),
    ("dev", "config:\n  adaptive-dask:production: 0\n"),
    ("dev", 'config:\n  adaptive-dask:production: "yes"\n'),
    ("dev", "config:\n  adaptive-dask:production:\n"),
    ("dev", "config: {adaptive-dask:production: true}\n"),
]


@pytest.mark.parametrize(("stack", "text"), AGREE)
def test_script_agrees_with_is_strict(lister: ModuleType, stack: str, text: str):
    assert lister.is_strict(stack, text) == is_strict(stack, cli_config(text)), (stack, text)


@pytest.mark.parametrize(("stack", "text"), FAIL_CLOSED)
def test_script_fails_closed(lister: ModuleType, stack: str, text: str):
    assert lister.is_strict(stack, text) is True
    assert lister.is_strict(stack, text) >= is_strict(stack, cli_config(text))


def test_script_uses_the_packs_key_and_names(lister: ModuleType):
    from adaptive_dask_policy import STRICT_STACK_NAMES

    assert lister.STRICT_STACK_NAMES == STRICT_STACK_NAMES
    assert STRICT_CONFIG_KEY in lister.PRODUCTION_KEY.pattern


def test_script_splits_a_stacks_folder(tmp_path: Path):
    # the config-driven cases, each under a neutral name of its own
    files = {f"s{i}": text for i, (_, text) in enumerate(AGREE[:14])}
    for stack, text in files.items():
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(text)
    (tmp_path / "Pulumi.prod-eu.yaml").write_text("config:\n  adaptive-dask:target: aws\n")
    (tmp_path / "Pulumi.laptop.yaml").write_text(
        "config:\n  adaptive-dask:target: local\n  adaptive-dask:production: true\n"
    )
    proc = run_lister(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = parse_outputs(proc.stdout)
    want_strict = sorted([s for s, t in files.items() if is_strict(s, cli_config(t))] + ["prod-eu"])
    assert out["strict"] == want_strict and len(want_strict) > 1
    assert out["stacks"] == sorted(set(files) - set(want_strict))
    assert "laptop" not in out["stacks"] + out["strict"]  # local stacks: previewed nowhere
