"""Issue 20 A1: the weekly pin bump moves exactly the pins, asks AWS what the program asks, and its workflow
keeps prod's secrets away from both pull requests and the job that writes to the repository.

No AWS here: .github/scripts/bump_pins.py takes its two AWS reads through an injectable interface, and these
tests answer them with fakes shaped like the real responses (SSM GetParameter's `Parameter.Value`, EKS
DescribeAddonVersions' `addons[].addonVersions[].addonVersion`). The bumped file is then read back with a
YAML parser and with the program's own config loader (as tests/infra run it), in a separate process.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from infra.aws.nodegroups import ARCHITECTURE, ami_release_parameter
from infra.config.aws import MANAGED_ADDONS
from tests.ci.workflows import (
    PR_EVENTS,
    ROOT,
    WORKFLOWS,
    can_run_on,
    is_strict,
    literal_environment,
    load_prod_settings,
    secrets_of,
    steps_using,
    triggers,
)

SCRIPT = ROOT / ".github" / "scripts" / "bump_pins.py"
PIN_BUMP = ROOT / ".github" / "workflows" / "pin-bump.yml"
CLUSTER = "adaptive-dask:cluster"


@pytest.fixture(scope="module")
def bp() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bump_pins", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while the class is built
    spec.loader.exec_module(module)
    return module


class FakeAws:
    """Answers like AWS would, and records every question."""

    def __init__(self, ami: str, addons: dict[str, str]) -> None:
        self.ami, self.addons = ami, addons
        self.calls: list[tuple[str, ...]] = []

    def ssm_parameter(self, name: str, region: str) -> str:
        self.calls.append(("ssm", name, region))
        return self.ami

    def addon_versions(self, addon: str, kubernetes_version: str, region: str) -> dict[str, Any]:
        self.calls.append(("eks", addon, kubernetes_version, region))
        newest = self.addons[addon]
        # DescribeAddonVersions lists the newest first; an older build and the default flag follow
        return {
            "addons": [
                {
                    "addonName": addon,
                    "type": "networking",
                    "addonVersions": [
                        {
                            "addonVersion": newest,
                            "architecture": ["amd64", "arm64"],
                            "compatibilities": [
                                {
                                    "clusterVersion": kubernetes_version,
                                    "platformVersions": ["*"],
                                    "defaultVersion": False,
                                }
                            ],
                        },
                        {
                            "addonVersion": "v1.0.0-eksbuild.1",
                            "compatibilities": [
                                {"clusterVersion": kubernetes_version, "defaultVersion": True}
                            ],
                        },
                    ],
                }
            ]
        }


def committed(stack: str) -> str:
    return (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()


def cluster_of(text: str) -> dict:
    return yaml.safe_load(text)["config"][CLUSTER]


NEWER_AMI = "{version}.7-20291231"
NEWER_ADDONS = {
    "vpc-cni": "v1.99.1-eksbuild.4",
    "kube-proxy": "v{version}.9-eksbuild.3",
    "coredns": "v1.98.0-eksbuild.2",
}


def newer(version: str) -> FakeAws:
    return FakeAws(
        NEWER_AMI.format(version=version), {a: v.format(version=version) for a, v in NEWER_ADDONS.items()}
    )


def stacks_dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "stacks"
    d.mkdir(exist_ok=True)
    for stack, text in files.items():
        (d / f"Pulumi.{stack}.yaml").write_text(text)
    return d


def run(bp: ModuleType, aws: FakeAws, d: Path, *args: str) -> int:
    return bp.main([*args, "--stacks-dir", str(d)], aws=aws)


# --- the committed prod file ----------------------------------------------------------------------------


def test_committed_prod_pins_every_managed_addon_and_the_ami():
    cluster = cluster_of(committed("prod"))
    assert cluster["nodeAmiReleaseVersion"] != "latest"
    assert set(cluster["addonVersions"]) == set(MANAGED_ADDONS)
    assert "latest" not in cluster["addonVersions"].values()


def test_bump_rewrites_exactly_the_pins_of_the_committed_prod_file(bp, tmp_path: Path, capsys):
    old = committed("prod")
    version = cluster_of(old)["version"]
    d = stacks_dir(tmp_path, prod=old)
    aws = newer(version)
    summary = tmp_path / "pins.md"
    assert run(bp, aws, d, "prod", "--summary", str(summary)) == 0
    new = (d / "Pulumi.prod.yaml").read_text()

    old_lines, new_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(old_lines) == len(new_lines)
    changed = {i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b}
    pins = cluster_of(old)
    want = {
        "nodeAmiReleaseVersion": aws.ami,
        **{f"addonVersions.{a}": aws.addons[a] for a in pins["addonVersions"]},
    }
    olds = {
        "nodeAmiReleaseVersion": pins["nodeAmiReleaseVersion"],
        **{f"addonVersions.{a}": v for a, v in pins["addonVersions"].items()},
    }
    assert len(changed) == len(want) == 1 + len(MANAGED_ADDONS)
    seen = set()
    for i in changed:  # each changed line is one pin's own line, its old self with only the value swapped
        key = next(k for k in olds if re.match(rf"\s*{re.escape(k.split('.')[-1])}:", old_lines[i]))
        assert new_lines[i] == old_lines[i].replace(olds[key], want[key], 1), (old_lines[i], new_lines[i])
        seen.add(key)
    assert seen == set(olds)
    # every other byte is kept: comments, blank lines, order, quoting, the final newline
    assert [x for i, x in enumerate(new_lines) if i not in changed] == [
        x for i, x in enumerate(old_lines) if i not in changed
    ]
    assert [ln for ln in old_lines if ln.lstrip().startswith("#")] == [
        ln for ln in new_lines if ln.lstrip().startswith("#")
    ]

    data_old, data_new = yaml.safe_load(old), yaml.safe_load(new)
    assert data_new["config"][CLUSTER]["nodeAmiReleaseVersion"] == aws.ami
    assert data_new["config"][CLUSTER]["addonVersions"] == {a: aws.addons[a] for a in pins["addonVersions"]}
    for tree in (data_old, data_new):
        del tree["config"][CLUSTER]["nodeAmiReleaseVersion"], tree["config"][CLUSTER]["addonVersions"]
    assert data_new == data_old  # nothing else moved

    out = capsys.readouterr().out
    assert out == summary.read_text()
    for key, value in olds.items():
        assert f"`{CLUSTER}.{key}` | `{value}` → `{want[key]}`" in out
    assert "no change" not in out


def test_the_program_asks_aws_what_the_program_would_ask(bp, tmp_path: Path):
    """The SSM parameter is the program's own (ami_release_parameter, for the node groups' architecture), and
    every addon question carries the stack's Kubernetes version and region."""
    text = committed("prod")
    config = yaml.safe_load(text)["config"]
    version, region = config[CLUSTER]["version"], config["aws:region"]
    aws = newer(version)
    assert run(bp, aws, stacks_dir(tmp_path, prod=text), "prod", "--dry-run") == 0
    ssm = [c for c in aws.calls if c[0] == "ssm"]
    assert ssm == [("ssm", ami_release_parameter(version, ARCHITECTURE), region)]
    assert sorted(c[1:] for c in aws.calls if c[0] == "eks") == sorted(
        (a, version, region) for a in config[CLUSTER]["addonVersions"]
    )
    assert (tmp_path / "stacks" / "Pulumi.prod.yaml").read_text() == text  # --dry-run writes nothing


def test_the_program_still_loads_the_bumped_prod_file(bp, tmp_path: Path):
    """The whole config loader (load_settings, as tests/infra run it under mocks) accepts the bumped file and
    reads the new pins; in its own process, so the Pulumi runtime's globals stay out of this one."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "stacks", root / "stacks")
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    version = cluster_of(committed("prod"))["version"]
    aws = newer(version)
    assert run(bp, aws, root / "stacks", "prod") == 0
    ami, addons = yaml.safe_load(
        load_prod_settings(
            root, "json.dumps([s.aws.cluster.node_ami_release_version, dict(s.aws.cluster.addon_versions)])"
        )
    )
    assert ami == aws.ami
    assert addons == {a: aws.addons[a] for a in MANAGED_ADDONS}


def test_after_a_version_change_the_bump_moves_the_pins_to_it(bp, tmp_path: Path):
    """The pins belong to `cluster.version`: with the version changed (the old pins now refused by the
    program), a bump asks for the new version and writes pins the program accepts."""
    old = cluster_of(PROD)["version"]
    minor = int(old.split(".")[1])
    other = f"1.{minor - 1}"
    text = PROD.replace(f'version: "{old}"', f'version: "{other}"')
    with pytest.raises(bp.BumpError, match="is for Kubernetes"):
        bp.validate("x", text)
    d = stacks_dir(tmp_path, prod=text)
    aws = newer(other)
    assert run(bp, aws, d, "prod") == 0
    assert {c[2] for c in aws.calls if c[0] == "eks"} == {other}
    region = yaml.safe_load(PROD)["config"]["aws:region"]
    assert ("ssm", ami_release_parameter(other, ARCHITECTURE), region) in aws.calls
    new = (d / "Pulumi.prod.yaml").read_text()
    assert cluster_of(new)["nodeAmiReleaseVersion"].startswith(f"{other}.")
    bp.validate("x", new)


def test_no_change_leaves_the_file_alone_and_says_so(bp, tmp_path: Path, capsys):
    text = committed("prod")
    pins = cluster_of(text)
    aws = FakeAws(pins["nodeAmiReleaseVersion"], dict(pins["addonVersions"]))
    summary = tmp_path / "pins.md"
    d = stacks_dir(tmp_path, prod=text)
    before = (d / "Pulumi.prod.yaml").stat().st_mtime_ns
    assert run(bp, aws, d, "--summary", str(summary)) == 0  # default selection: prod is the pinned stack
    assert (d / "Pulumi.prod.yaml").read_text() == text
    assert (d / "Pulumi.prod.yaml").stat().st_mtime_ns == before  # not even rewritten
    out = capsys.readouterr().out
    assert "no change" in out and "→" not in out
    assert summary.read_text() == out
    assert aws.calls  # it did ask


def test_a_latest_stack_is_left_alone(bp, tmp_path: Path, capsys):
    dev = committed("dev")
    assert cluster_of(dev)["nodeAmiReleaseVersion"] == "latest"
    d = stacks_dir(tmp_path, dev=dev, local=committed("local"))
    aws = newer("1.35")
    assert run(bp, aws, d) == 0  # default: only stacks that pin something
    assert aws.calls == []
    assert "no change" in capsys.readouterr().out
    assert run(bp, aws, d, "dev") == 0  # named explicitly: said, not bumped
    assert aws.calls == []
    assert (d / "Pulumi.dev.yaml").read_text() == dev
    assert "Pulumi.dev.yaml`: tracks latest" in capsys.readouterr().out


def test_a_production_stack_on_latest_is_refused_not_left_alone(bp, tmp_path: Path, capsys):
    """Named on purpose, a stack that pins nothing is still read by the program's loader: production there
    must pin, so "left alone" would hide a stack that cannot deploy."""
    text = re.sub(
        r"(?m)^(    nodeAmiReleaseVersion|      [a-z-]+): .*-(\d{8}|eksbuild\.\d+)$", r"\1: latest", PROD
    )
    assert bp.read_stack("x", text).pins == ()
    d = stacks_dir(tmp_path, prod=text)
    aws = newer("1.35")
    assert run(bp, aws, d) == 0 and aws.calls == []  # default selection: nothing pinned, nothing asked
    assert run(bp, aws, d, "prod") == 1
    err = capsys.readouterr().err
    assert "Pulumi.prod.yaml" in err and "must be a pinned version in a production stack" in err, err


def test_default_selection_bumps_only_the_pinned_stacks(bp, tmp_path: Path):
    d = stacks_dir(tmp_path, dev=committed("dev"), prod=committed("prod"), local=committed("local"))
    aws = newer(cluster_of(committed("prod"))["version"])
    assert run(bp, aws, d) == 0
    assert (d / "Pulumi.dev.yaml").read_text() == committed("dev")
    assert (d / "Pulumi.local.yaml").read_text() == committed("local")
    assert cluster_of((d / "Pulumi.prod.yaml").read_text())["nodeAmiReleaseVersion"] == aws.ami
    assert {c[-1] for c in aws.calls} == {yaml.safe_load(committed("prod"))["config"]["aws:region"]}


def test_a_partly_pinned_stack_moves_only_its_pins(bp, tmp_path: Path):
    text = committed("dev").replace(
        "      kube-proxy: latest", "      kube-proxy: v1.35.0-eksbuild.1  # held back"
    )
    d = stacks_dir(tmp_path, dev=text)
    aws = newer("1.35")
    assert run(bp, aws, d) == 0
    new = (d / "Pulumi.dev.yaml").read_text()
    assert f"      kube-proxy: {aws.addons['kube-proxy']}  # held back\n" in new
    assert [c[:2] for c in aws.calls] == [("eks", "kube-proxy")]
    assert cluster_of(new)["nodeAmiReleaseVersion"] == "latest"
    assert new.replace(aws.addons["kube-proxy"], "v1.35.0-eksbuild.1") == text


# --- refusals -------------------------------------------------------------------------------------------

PROD = committed("prod")


def without(text: str, pattern: str) -> str:
    out, n = re.subn(pattern, "", text, count=1, flags=re.MULTILINE)
    assert n == 1, pattern
    return out


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        pytest.param("config:\n  adaptive-dask:cluster: [\n", None, "not valid YAML", id="bad-yaml"),
        pytest.param("- just\n- a list\n", "(top level)", "must be a mapping", id="not-a-mapping"),
        pytest.param("config: 3\n", "config", "must be a mapping", id="config-not-a-mapping"),
        pytest.param(
            without(PROD, r"^  adaptive-dask:cluster:\n(    .*\n|\s*\n)*"),
            CLUSTER,
            "missing",
            id="no-cluster",
        ),
        pytest.param(
            without(PROD, r'^    version: "1\.\d+"\n'), f"{CLUSTER}.version", "missing", id="no-version"
        ),
        pytest.param(
            PROD.replace('version: "1.35"', "version: 1.35"),
            f"{CLUSTER}.version",
            "quoted",
            id="version-a-number",
        ),
        pytest.param(
            without(PROD, r"^      coredns: .*\n"),
            f"{CLUSTER}.addonVersions",
            "coredns",
            id="prod-addon-missing",
        ),
        pytest.param(
            without(PROD, r"^    nodeAmiReleaseVersion: .*\n"),
            f"{CLUSTER}.nodeAmiReleaseVersion",
            "must pin",
            id="prod-ami-missing",
        ),
        pytest.param(
            re.sub(r"(?m)^    nodeAmiReleaseVersion: .*$", "    nodeAmiReleaseVersion: latest", PROD),
            f"{CLUSTER}.nodeAmiReleaseVersion",
            "must pin",
            id="prod-tracks-latest",
        ),
        pytest.param(
            re.sub(r"(?m)^      vpc-cni: .*$", "      vpc-cni: 1", PROD),
            f"{CLUSTER}.addonVersions.vpc-cni",
            "must be a string",
            id="addon-not-a-string",
        ),
        pytest.param(
            re.sub(r"(?m)^      vpc-cni: .*$", "      vpc-cn1: v1.20.4-eksbuild.1", PROD),
            f"{CLUSTER}.addonVersions.vpc-cn1",
            "not a managed addon",
            id="addon-typo",
        ),
    ],
)
def test_refuses_naming_the_file_and_key(bp, tmp_path: Path, capsys, text: str, key: str | None, says: str):
    d = stacks_dir(tmp_path, prod=text)
    aws = newer("1.35")
    assert run(bp, aws, d, "prod") == 1
    err = capsys.readouterr().err
    assert "Pulumi.prod.yaml" in err and says in err, err
    if key:
        assert f"{key}:" in err, err
    assert (d / "Pulumi.prod.yaml").read_text() == text  # nothing written


@pytest.mark.parametrize(
    ("ami", "addon", "key", "says"),
    [
        ("1.34.9-20291231", "v1.99.0-eksbuild.1", "nodeAmiReleaseVersion", "is for Kubernetes 1.34"),
        ("1.35.9-2029123", "v1.99.0-eksbuild.1", "nodeAmiReleaseVersion", "must be an EKS AMI release"),
        ("1.35.9-20291231", "1.99.0", "addonVersions.", "must look like"),
    ],
)
def test_refuses_an_answer_the_program_would_refuse(bp, tmp_path: Path, capsys, ami, addon, key, says):
    d = stacks_dir(tmp_path, prod=PROD)
    aws = FakeAws(ami, dict.fromkeys(MANAGED_ADDONS, addon))
    assert run(bp, aws, d, "prod") == 1
    err = capsys.readouterr().err
    assert f"{CLUSTER}.{key}" in err and says in err and "Pulumi.prod.yaml" in err, err
    assert (d / "Pulumi.prod.yaml").read_text() == PROD


def test_an_aws_failure_is_named(bp, tmp_path: Path, capsys):
    class Broken(FakeAws):
        def ssm_parameter(self, name: str, region: str) -> str:
            raise RuntimeError(f"aws ssm get-parameter: ParameterNotFound {name}")

    assert run(bp, Broken("", {}), stacks_dir(tmp_path, prod=PROD), "prod") == 1
    err = capsys.readouterr().err
    assert "Pulumi.prod.yaml" in err and "ParameterNotFound" in err


def test_an_unknown_stack_is_refused(bp, tmp_path: Path, capsys):
    assert run(bp, newer("1.35"), stacks_dir(tmp_path, prod=PROD), "qa") == 1
    assert "no stack file for qa" in capsys.readouterr().err


def test_a_flow_style_mapping_is_refused_not_mangled(bp, tmp_path: Path, capsys):
    flow = ", ".join(f"{a}: {v}" for a, v in cluster_of(PROD)["addonVersions"].items())
    text = re.sub(r"(?m)^    addonVersions:\n(      .*\n)+", f"    addonVersions: {{{flow}}}\n", PROD)
    assert cluster_of(text) == cluster_of(PROD)  # the same config, written inline
    d = stacks_dir(tmp_path, prod=text)
    assert run(bp, newer("1.35"), d, "prod") == 1
    assert f"{CLUSTER}.addonVersions: is written inline" in capsys.readouterr().err
    assert (d / "Pulumi.prod.yaml").read_text() == text


# --- the pure parts -------------------------------------------------------------------------------------


def test_rewrite_keeps_quotes_comments_and_line_endings(bp):
    text = (
        "# top\r\n"
        "config:\r\n"
        '  "adaptive-dask:cluster":\r\n'
        '    version: "1.35"\r\n'
        "    nodeAmiReleaseVersion: '1.35.0-20261118'   # pinned on purpose\r\n"
        "\r\n"
        "    addonVersions:\r\n"
        "      # the CNI\r\n"
        '      vpc-cni: "v1.20.4-eksbuild.1"\r\n'
        "      coredns: latest\r\n"
    )
    stack = bp.read_stack("x.yaml", text)
    assert [p.path for p in stack.pins] == [("nodeAmiReleaseVersion",), ("addonVersions", "vpc-cni")]
    result = bp.plan(
        stack,
        {("nodeAmiReleaseVersion",): "1.35.1-20270101", ("addonVersions", "vpc-cni"): "v1.21.0-eksbuild.1"},
    )
    new = bp.rewrite("x.yaml", text, result.changes)
    assert new == text.replace("'1.35.0-20261118'", "'1.35.1-20270101'").replace(
        '"v1.20.4-eksbuild.1"', '"v1.21.0-eksbuild.1"'
    )


def test_rewrite_only_touches_the_cluster_section(bp):
    """A same-named key elsewhere (another section, a comment) is never the one edited."""
    text = (
        "config:\n"
        "  adaptive-dask:dask:\n"
        "    nodeAmiReleaseVersion: 1.35.0-20261118\n"
        "  adaptive-dask:cluster:\n"
        '    version: "1.35"\n'
        "    # nodeAmiReleaseVersion: 1.35.0-20261118\n"
        "    nodeAmiReleaseVersion: 1.35.0-20261118\n"
    )
    stack = bp.read_stack("x.yaml", text)
    new = bp.rewrite("x.yaml", text, bp.plan(stack, {("nodeAmiReleaseVersion",): "1.35.0-20270101"}).changes)
    assert new.splitlines()[:-1] == text.splitlines()[:-1]
    assert new.splitlines()[-1] == "    nodeAmiReleaseVersion: 1.35.0-20270101"


def test_the_addon_choice_is_the_providers_most_recent(bp):
    """`get_addon_version(most_recent=True)` takes the first version listed, not the default one."""
    response = {
        "addons": [
            {"addonName": "coredns", "addonVersions": [{"addonVersion": "v9.9.9-eksbuild.1"}]},
            {
                "addonName": "vpc-cni",
                "addonVersions": [
                    {"addonVersion": "v1.21.1-eksbuild.2", "compatibilities": [{"defaultVersion": False}]},
                    {"addonVersion": "v1.20.4-eksbuild.1", "compatibilities": [{"defaultVersion": True}]},
                ],
            },
        ]
    }
    assert bp.newest_addon_version(response, "vpc-cni") == "v1.21.1-eksbuild.2"
    assert bp.newest_addon_version(response, "kube-proxy") is None
    assert bp.newest_addon_version({"addons": []}, "vpc-cni") is None


def test_the_aws_cli_is_asked_for_exactly_that(bp):
    argvs: list[list[str]] = []
    answers = {
        "ssm": '{"Parameter": {"Name": "n", "Type": "String", "Value": "1.35.0-20261202", "Version": 41}}',
        "eks": '{"addons": [{"addonName": "coredns", "addonVersions": [{"addonVersion": "v1.12.5-eksbuild.1"}]}]}',  # noqa: E501
    }

    def fake_run(argv: list[str]) -> str:
        argvs.append(argv)
        return answers[argv[1]]

    cli = bp.AwsCli(run=fake_run)
    param = ami_release_parameter("1.35", ARCHITECTURE)
    assert cli.ssm_parameter(param, "eu-west-1") == "1.35.0-20261202"
    assert (
        bp.newest_addon_version(cli.addon_versions("coredns", "1.35", "eu-west-1"), "coredns")
        == "v1.12.5-eksbuild.1"
    )
    assert argvs == [
        ["aws", "ssm", "get-parameter", "--name", param, "--region", "eu-west-1", "--output", "json"],
        [
            "aws", "eks", "describe-addon-versions", "--addon-name", "coredns",
            "--kubernetes-version", "1.35", "--region", "eu-west-1", "--output", "json",
        ],
    ]  # fmt: skip


def test_pr_body_fits_and_keeps_both_ends_of_a_long_preview(bp):
    summary = "## Version pins\n\n| key | pinned → newest |\n"
    preview = "\n".join(
        [
            "Previewing update (prod):",
            *[f"    ~ aws:eks:NodeGroup group-{i} update [diff: ~releaseVersion]" for i in range(5000)],
            "Resources:",
            "    ~ 5000 to update",
            "```",
        ]
    )
    body = bp.pr_body(summary, preview, "https://example.invalid/run/1", limit=20_000)
    assert len(body) <= 20_000
    assert body.startswith(summary.rstrip())
    assert "Previewing update (prod):" in body and "~ 5000 to update" in body
    assert re.search(r"\.\.\. \d+ lines cut here", body) and "https://example.invalid/run/1" in body
    assert body.count("```") == 2  # the preview cannot close the fence early
    short = bp.pr_body(summary, "Resources:\n    4 unchanged\n")
    assert "cut" not in short and "4 unchanged" in short


def test_pr_body_from_the_command_line(bp, tmp_path: Path, capsys):
    (tmp_path / "pins.md").write_text("## Version pins\n")
    (tmp_path / "preview.txt").write_text("Resources:\n    ~ 3 to update\n")
    assert bp.main(["--pr-body", str(tmp_path / "preview.txt"), "--summary", str(tmp_path / "pins.md")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Version pins") and "~ 3 to update" in out


# --- the workflow ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(PIN_BUMP.read_text())


def runs(job: dict) -> list[str]:
    return [str(s.get("run", "")) for s in job["steps"]]


def test_pin_bump_runs_weekly_and_by_hand_only(wf):
    on = triggers(wf)
    assert set(on) == {"schedule", "workflow_dispatch"}
    (cron,) = [s["cron"] for s in on["schedule"]]
    assert re.fullmatch(r"\d+ \d+ \* \* \d", cron)  # once a week
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["cancel-in-progress"] is False
    for name in wf["jobs"]:
        for event in PR_EVENTS:
            assert not can_run_on(wf, name, event), name


def test_the_bump_job_holds_prods_preview_secrets_and_cannot_write(wf):
    bump = wf["jobs"]["bump"]
    assert bump["environment"] == "prod-preview" and is_strict(bump["environment"])
    assert bump["permissions"] == {"contents": "read", "id-token": "write"}
    assert "refs/heads/main" in bump["if"]
    assert bump["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    (aws,) = steps_using(bump, "aws-actions/configure-aws-credentials")
    assert (
        aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    )  # read-only, never a deploy role
    steps = runs(bump)
    bump_at = next(i for i, r in enumerate(steps) if re.search(r"bump_pins\.py prod\b", r))
    preview_at = next(i for i, r in enumerate(steps) if "pulumi preview" in r)
    assert bump_at < preview_at
    preview = bump["steps"][preview_at]
    assert "--stack prod" in preview["run"] and "--policy-pack policy" in preview["run"]
    assert "pipefail" in preview["run"] and "steps.bump.outputs.changed == 'true'" in preview["if"]
    assert any("--require-hashes -r policy/requirements.txt" in r for r in steps)
    assert steps.index(next(r for r in steps if "bash .ci/bootstrap" in r)) < bump_at
    (cli,) = steps_using(bump, "pulumi/actions")
    assert cli["with"] == {"pulumi-version": "${{ env.PULUMI_VERSION }}"}  # install only: the pinned CLI
    pins = dict(ln.split("==") for ln in (ROOT / "requirements.txt").read_text().splitlines() if "==" in ln)
    assert wf["env"]["PULUMI_VERSION"] == pins["pulumi"]


def test_the_propose_job_can_write_but_holds_nothing_of_prod(wf):
    propose = wf["jobs"]["propose"]
    assert propose["needs"] == ["bump"] and "needs.bump.outputs.changed == 'true'" in propose["if"]
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "environment" not in propose
    assert not secrets_of(propose)
    assert not steps_using(propose, "aws-actions/configure-aws-credentials")
    assert not steps_using(propose, "pulumi/actions")
    (script,) = [r for r in runs(propose) if "/pulls" in r]
    assert "stacks/Pulumi.prod.yaml" in script  # it refuses a patch touching anything else
    assert "persist-credentials" in str(propose["steps"][0]["with"])


def test_workflow_permissions_that_write_or_mint_tokens_say_why():
    for path in WORKFLOWS:
        for ln in path.read_text().splitlines():
            if re.match(r"\s*(id-token|contents|pull-requests):\s*write\b", ln):
                _, _, why = ln.partition("#")
                assert len(why.split()) >= 3, f"{path.name}: {ln.strip()} needs a trailing comment"


def test_no_expression_expands_inside_a_shell_line(wf):
    """Values reach the shell through `env:` only (template injection): the patch and body included."""
    for name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            assert "${{" not in str(step.get("run", "")), (name, step.get("name"))


def test_no_pull_request_job_in_any_workflow_gets_a_strict_stack():
    """test_workflow_strict reads infra.yml; the same rule for every workflow file: a job a pull request can
    start names no strict environment or stack, and reads no secret outside an environment."""
    for path in WORKFLOWS:
        w = yaml.safe_load(path.read_text())
        for name, job in w["jobs"].items():
            if not any(can_run_on(w, name, e) for e in PR_EVENTS):
                continue
            env = literal_environment(job)
            assert env is None or not is_strict(env), (path.name, name, env)
            assert not secrets_of(job) or env, (path.name, name)
            for step in steps_using(job, "pulumi/actions"):
                stack = str(step.get("with", {}).get("stack-name", ""))
                assert not stack or "${{" in stack or not is_strict(stack), (path.name, name, stack)
            assert not any(re.search(r"--stack[ =]prod", r) for r in runs(job)), (path.name, name)
