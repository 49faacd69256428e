"""What the tests of the workflows share: where they are, and readers of a parsed workflow.

- `ROOT`, `WORKFLOW` (infra.yml), `WORKFLOWS` (every workflow file), `LISTER` (the stack-listing script the
  matrix job runs) and `run_lister` / `parse_outputs` to run it and read its `$GITHUB_OUTPUT` lines;
- `triggers`, `steps_using`, `needs`, `secrets_of`, `literal_environment`: parts of a parsed workflow;
- `can_be_true(condition, event)` and `can_run_on(wf, job, event)`: whether a job can run on an event
  (`PR_EVENTS` are the events a branch pusher controls);
- `is_strict` / `STRICT_CONFIG_KEY`: the policy pack's own answer to "is this stack strict?".
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "infra.yml"
LISTER = ROOT / ".github" / "scripts" / "list_stacks.py"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))

POLICY_DIR = ROOT / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

from adaptive_dask_policy import STRICT_CONFIG_KEY as STRICT_CONFIG_KEY  # noqa: E402 (re-exported)
from adaptive_dask_policy import is_strict as is_strict  # noqa: E402 (re-exported)

PR_EVENTS = ("pull_request", "pull_request_target")
SECRET_REF = re.compile(r"secrets\.(?!GITHUB_TOKEN\b)([A-Za-z_][A-Za-z0-9_]*)")
STATUS_FUNCTION = re.compile(r"\b(always|failure|cancelled|success)\(\)")
OPERAND = r"(?:'[^']*'|[A-Za-z_][\w.\-\[\]'*]*)"
COMPARISON = re.compile(rf"{OPERAND}\s*(?:==|!=|<=|>=|<|>)\s*{OPERAND}")
CALL = re.compile(r"[A-Za-z_]\w*\([^()]*\)")
EVENT_TEST = re.compile(r"github\.event_name\s*(==|!=)\s*'([^']*)'")


def triggers(wf: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    return wf.get("on", wf.get(True))


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(action + "@")]


def needs(job: dict) -> list[str]:
    n = job.get("needs", [])
    return [n] if isinstance(n, str) else list(n)


def run_lister(stacks_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LISTER), str(stacks_dir)], capture_output=True, text=True, check=False
    )


def parse_outputs(stdout: str) -> dict[str, list[str]]:
    """The script's `key=value` lines, as $GITHUB_OUTPUT reads them: {"stacks": [...], "strict": [...]}."""
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        out[key] = json.loads(value)
    assert set(out) == {"stacks", "strict"}, stdout
    return out


def can_be_true(condition: str, event: str) -> bool:
    """Whether a job `if` can hold when github.event_name is `event`, whatever everything else is.

    Event tests become constants; every other comparison, call or value is an unknown tried both ways. An
    expression this cannot read fails the test rather than guess."""
    expr = condition.strip()
    if expr.startswith("${{") and expr.endswith("}}"):
        expr = expr[3:-2]
    expr = EVENT_TEST.sub(lambda m: str((m[2] == event) == (m[1] == "==")), expr)
    unknowns: list[str] = []

    def unknown(_: re.Match) -> str:
        unknowns.append(f"u{len(unknowns)}")
        return unknowns[-1]

    while CALL.search(expr):
        expr = CALL.sub(unknown, expr)
    expr = COMPARISON.sub(unknown, expr)
    expr = re.sub(r"\b(?!True\b|False\b|u\d+\b)[A-Za-z_][\w.\-]*", unknown, expr)
    py = expr.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    assert re.fullmatch(r"[\sA-Za-z0-9()]*", py), f"cannot read condition: {condition!r}"
    for values in itertools.product((True, False), repeat=len(unknowns)):
        if eval(py, {"__builtins__": {}}, dict(zip(unknowns, values, strict=True))):
            return True
    return False


def can_run_on(wf: dict, name: str, event: str) -> bool:
    """A job runs on `event` if the workflow triggers on it, its `if` can hold, and (no status function
    overriding it) every job it needs can run too."""
    if event not in triggers(wf):
        return False
    job = wf["jobs"][name]
    cond = str(job.get("if", "true"))
    if not can_be_true(cond, event):
        return False
    return bool(STATUS_FUNCTION.search(cond)) or all(can_run_on(wf, n, event) for n in needs(job))


def secrets_of(job: dict) -> set[str]:
    return set(SECRET_REF.findall(yaml.safe_dump(job)))


def literal_environment(job: dict) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def load_prod_settings(root: Path, expression: str) -> str:
    """`expression` over the Settings the program loads (load_settings under the harness's mocks) from
    `root`'s stacks/Pulumi.prod.yaml, printed by a fresh process (the Pulumi runtime's globals stay out of
    this one); its last line of output."""
    probe = (
        "import json, sys; from pathlib import Path\n"
        "from testbed.infra.harness import install, load_stack_config, run_program\n"
        "from infra.config.load import load_settings\n"
        "_, config, secrets = load_stack_config('prod', root=Path(sys.argv[1]))\n"
        "install(stack='prod', config=config, secret_keys=secrets)\n"
        "s = run_program(load_settings)\n"
        f"print({expression})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(root)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]
