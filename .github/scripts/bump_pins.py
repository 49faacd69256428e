"""Move a stack file's version pins to what AWS publishes now, editing only those values.

Why: versions are facts of the stack (docs/operations.md). A production stack pins its node AMI release
(`adaptive-dask:cluster.nodeAmiReleaseVersion`) and every managed addon (`cluster.addonVersions`), so a
routine `up` never rolls nodes; the pins move only through a reviewed change, which this script writes
(the weekly `.github/workflows/pin-bump.yml` opens it as a pull request with the preview in it).

What "newest" means is what the program itself resolves for `latest`, so a bumped pin equals what dev
runs: the AMI release is the value of the public SSM parameter `ami_release_parameter(version, arch)`
(infra/aws/nodegroups.py) for the architecture the node groups run, and an addon's build is the one
`aws.eks.get_addon_version(most_recent=True)` picks (infra/aws/cluster.py): the first version
DescribeAddonVersions lists for the addon and the stack's Kubernetes version.

Only the scalar values change: every comment, key order and blank line stays byte for byte, and the edit is
proven by re-reading the file (the YAML must equal the old one with exactly those values replaced) and by
the program's own config validation (infra/config/aws.py `parse_aws`), so a bump the program would refuse
is never written. A stack that pins nothing (dev says `latest`) is left alone.

Usage:
  python .github/scripts/bump_pins.py [STACK ...] [--summary FILE] [--dry-run] [--stacks-dir DIR]
      STACK: a stack name (prod -> stacks/Pulumi.prod.yaml); default: every stack file that pins something.
      Prints a markdown summary (old -> new per key, or "no change"); exit 0 either way, 1 when a stack
      file cannot be read, lacks a key, or AWS cannot answer (the message names the file and the key).
  python .github/scripts/bump_pins.py --pr-body PREVIEW_FILE --summary FILE [--run-url URL]
      Prints the pull request body: the summary, then the preview (cut to fit a pull request).
AWS is asked through the AWS CLI (v2, preinstalled on GitHub's runners; boto3 in the lock is a 0.0.x
release that parliament pulls in and cannot import on Python 3.11), with the caller's credentials: it
needs ssm:GetParameter on the public `/aws/service/eks/...` parameters and eks:DescribeAddonVersions.
Runs in the project venv after `bash .ci/bootstrap` (it imports the program's own names).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the program's packages live at the repository root

from infra.aws.nodegroups import ARCHITECTURE, ami_release_parameter  # noqa: E402
from infra.config.aws import ADDON_NAMES, DEFAULT_REGION, LATEST, parse_aws  # noqa: E402
from infra.config.reader import PROJECT, ConfigReader, Field  # noqa: E402
from infra.errors import ConfigError  # noqa: E402

# The sibling scripts, whether this one runs as a file or is loaded by path (tests/ci).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from list_stacks import stack_files  # noqa: E402  (one reading of stacks/, as Pulumi finds the files)

CLUSTER_KEY = f"{PROJECT}:cluster"
AMI_FIELD = "nodeAmiReleaseVersion"
ADDONS_FIELD = "addonVersions"
# Every node group runs one AMI type (infra/aws/nodegroups.py AMI_TYPE; the config refuses arm64), so the
# program reads one SSM parameter per stack. A tuple so a second architecture is one entry away; the single
# pin key then has to hold a release both agree on (checked in `ami_release`).
ARCHITECTURES: tuple[str, ...] = (ARCHITECTURE,)
PR_BODY_LIMIT = 60_000  # GitHub refuses a pull request body over 65,536 characters


class BumpError(Exception):
    """A stack file this script will not edit, or an answer it cannot use; the message names both."""

    def __init__(self, file: str, key: str | None, why: str) -> None:
        self.file, self.key, self.why = file, key, why
        super().__init__(f"{file}: {key}: {why}" if key else f"{file}: {why}")


# --------------------------------------------------------------------------------------------------
# Reading a stack file (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """One pinned value: `path` inside `adaptive-dask:cluster` (("nodeAmiReleaseVersion",) or
    ("addonVersions", "coredns")) and its current value."""

    path: tuple[str, ...]
    value: str

    @property
    def key(self) -> str:
        return ".".join((CLUSTER_KEY, *self.path))


@dataclass(frozen=True)
class StackPins:
    file: str  # as shown in messages, e.g. stacks/Pulumi.prod.yaml
    version: str | None  # the cluster's Kubernetes version (None: a stack without a cluster)
    region: str
    pins: tuple[Pin, ...]  # empty: the stack tracks `latest` (or has no cluster): nothing to bump
    note: str = ""  # why nothing is pinned
    local: bool = False  # target local: no AWS layer at all


def _mapping(value: Any, file: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BumpError(file, key, f"must be a mapping, got {value!r}")
    return value


def _load(file: str, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BumpError(file, None, f"is not valid YAML ({str(exc).splitlines()[0]})") from None
    return _mapping(data, file, "(top level)")


def read_stack(file: str, text: str) -> StackPins:
    """The pins of one stack file. Refuses (BumpError naming the key) what it cannot read; says "nothing
    pinned" for a local-target stack or one whose versions are all `latest`."""
    config = _mapping(_load(file, text).get("config"), file, "config")
    region = str(config.get("aws:region", DEFAULT_REGION))
    if config.get(f"{PROJECT}:target") == "local":
        return StackPins(file, None, region, (), note="target local: no cluster, nothing to pin", local=True)
    if CLUSTER_KEY not in config:
        raise BumpError(file, CLUSTER_KEY, "missing; a stack with a cluster says its version and pins there")
    cluster = _mapping(config[CLUSTER_KEY], file, CLUSTER_KEY)
    pins: list[Pin] = []
    ami = cluster.get(AMI_FIELD)
    if ami is not None and not isinstance(ami, str):
        raise BumpError(file, f"{CLUSTER_KEY}.{AMI_FIELD}", f"must be a string, got {ami!r}")
    if ami not in (None, LATEST):
        pins.append(Pin((AMI_FIELD,), ami))
    addons = _mapping(cluster.get(ADDONS_FIELD) or {}, file, f"{CLUSTER_KEY}.{ADDONS_FIELD}")
    for name, value in addons.items():
        if not isinstance(value, str):
            raise BumpError(file, f"{CLUSTER_KEY}.{ADDONS_FIELD}.{name}", f"must be a string, got {value!r}")
        if value != LATEST:
            pins.append(Pin((ADDONS_FIELD, str(name)), value))
    if not pins:
        return StackPins(file, None, region, (), note=f"tracks {LATEST}: nothing pinned")
    version = cluster.get("version")
    if not isinstance(version, str):
        # The pins are for one Kubernetes version, so the file must say which (quoted, as the program wants).
        raise BumpError(
            file, f"{CLUSTER_KEY}.version", f"missing or not a quoted string ({version!r}); pins need it"
        )
    return StackPins(file, version, region, tuple(pins))


# --------------------------------------------------------------------------------------------------
# What AWS publishes: an injectable interface, and the pure choice among its answers
# --------------------------------------------------------------------------------------------------


class Aws(Protocol):
    """The two reads the program makes for `latest`, answered raw (tests pass fakes)."""

    def ssm_parameter(self, name: str, region: str) -> str:
        """The value of a (public) SSM parameter."""
        ...

    def addon_versions(self, addon: str, kubernetes_version: str, region: str) -> Mapping[str, Any]:
        """The DescribeAddonVersions response for one addon and Kubernetes version (all pages merged)."""
        ...


def newest_addon_version(response: Mapping[str, Any], addon: str) -> str | None:
    """The build `get_addon_version(most_recent=True)` picks: the first version listed for the addon
    (EKS lists them newest first; the provider takes index 0)."""
    for info in response.get("addons") or []:
        if info.get("addonName") not in (None, addon):
            continue
        for version in info.get("addonVersions") or []:
            if isinstance(version.get("addonVersion"), str):
                return version["addonVersion"]
    return None


def ami_release(stack: StackPins, aws: Aws) -> str:
    """The newest AMI release for the stack's version, read from the program's own SSM parameter(s)."""
    assert stack.version is not None
    releases = {
        a: aws.ssm_parameter(ami_release_parameter(stack.version, a), stack.region) for a in ARCHITECTURES
    }
    if len(set(releases.values())) != 1:
        raise BumpError(
            stack.file, f"{CLUSTER_KEY}.{AMI_FIELD}", f"one pin cannot hold different releases: {releases}"
        )
    return next(iter(releases.values()))


def newest(stack: StackPins, aws: Aws) -> dict[tuple[str, ...], str]:
    """AWS's newest value for every pin of the stack (the I/O half, kept thin)."""
    assert stack.version is not None
    found: dict[tuple[str, ...], str] = {}
    for pin in stack.pins:
        if pin.path == (AMI_FIELD,):
            found[pin.path] = ami_release(stack, aws)
            continue
        addon = pin.path[1]
        if addon not in ADDON_NAMES:  # the always-installed ones and those a stack may ask for
            raise BumpError(stack.file, pin.key, f"not a managed addon ({', '.join(ADDON_NAMES)})")
        build = newest_addon_version(aws.addon_versions(addon, stack.version, stack.region), addon)
        if build is None:
            raise BumpError(stack.file, pin.key, f"EKS lists no {addon} build for Kubernetes {stack.version}")
        found[pin.path] = build
    return found


# --------------------------------------------------------------------------------------------------
# Deciding and rewriting (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    pin: Pin
    new: str

    @property
    def moved(self) -> bool:
        return self.new != self.pin.value


@dataclass(frozen=True)
class StackResult:
    stack: StackPins
    changes: tuple[Change, ...] = ()

    @property
    def moved(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.moved)


def plan(stack: StackPins, found: Mapping[tuple[str, ...], str]) -> StackResult:
    """Old and new value of every pin (unmoved ones included, for the summary)."""
    return StackResult(stack, tuple(Change(p, found[p.path]) for p in stack.pins))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    """A line YAML reads as data (not blank, not a comment)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _split_key(line: str) -> tuple[str, str] | None:
    """(key, everything after its colon) of a block-mapping line (no line break), or None."""
    body = line.lstrip(" ")
    if not body.strip() or body.startswith(("#", "-")):
        return None
    if body[0] in "\"'":
        end = body.find(body[0], 1)
        m = re.match(r"\s*:(?=\s|$)", body[end + 1 :]) if end > 0 else None
        return (body[1:end], body[end + 1 + m.end() :]) if m else None
    m = re.search(r":(?=\s|$)", body)
    return (body[: m.start()].rstrip(), body[m.end() :]) if m else None


def _children(lines: Sequence[str], parent: int, file: str, key: str) -> tuple[range, int]:
    """The lines of a block mapping value under line `parent`, and the indent of its keys."""
    rest = _split_key(lines[parent])
    if rest and rest[1].strip() and not rest[1].strip().startswith("#"):
        raise BumpError(
            file, key, "is written inline; write it as an indented block so its values can be edited"
        )
    end, child = parent + 1, None
    while end < len(lines) and (not _content(lines[end]) or _indent(lines[end]) > _indent(lines[parent])):
        if child is None and _content(lines[end]):
            child = _indent(lines[end])
        end += 1
    if child is None:
        raise BumpError(file, key, "is empty")
    return range(parent + 1, end), child


def _find(lines: Sequence[str], within: range, indent: int, name: str, file: str, key: str) -> int:
    hits = [
        i
        for i in within
        if _content(lines[i]) and _indent(lines[i]) == indent and (_split_key(lines[i]) or ("",))[0] == name
    ]
    if len(hits) != 1:
        raise BumpError(file, key, "missing" if not hits else f"set {len(hits)} times")
    return hits[0]


_VALUE = re.compile(r"^(?P<lead>\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s#\"'][^#]*?)(?P<trail>\s*(?:#.*)?)$")


def _replace_value(line: str, new: str, file: str, key: str) -> str:
    """The line with its scalar value replaced: quoting kept, added where YAML would not read a string."""
    split = _split_key(line)
    assert split is not None
    rest = split[1]
    m = _VALUE.match(rest)
    if not m:
        raise BumpError(file, key, f"cannot find a single scalar value on the line {line.strip()!r}")
    old = m["value"]
    if old[0] in "\"'":
        value = f"{old[0]}{new}{old[0]}"
    else:
        value = new if yaml.safe_load(f"k: {new}")["k"] == new else json.dumps(new)
    head = line[: len(line) - len(rest)]
    return f"{head}{m['lead']}{value}{m['trail']}"


def _set(tree: dict[str, Any], path: Sequence[str], value: str) -> None:
    for part in path[:-1]:
        tree = tree[part]
    tree[path[-1]] = value


def rewrite(file: str, text: str, changes: Sequence[Change]) -> str:
    """`text` with exactly the moved values replaced, every other byte kept; proven by re-reading it."""
    moved = [c for c in changes if c.moved]
    if not moved:
        return text
    lines = text.splitlines(keepends=True)
    config_line = _find(lines, range(len(lines)), 0, "config", file, "config")
    config_block, config_indent = _children(lines, config_line, file, "config")
    cluster_line = _find(lines, config_block, config_indent, CLUSTER_KEY, file, CLUSTER_KEY)
    cluster_block, field_indent = _children(lines, cluster_line, file, CLUSTER_KEY)
    for change in moved:
        key = change.pin.key
        at = _find(lines, cluster_block, field_indent, change.pin.path[0], file, key)
        if len(change.pin.path) == 2:
            block, indent = _children(lines, at, file, f"{CLUSTER_KEY}.{change.pin.path[0]}")
            at = _find(lines, block, indent, change.pin.path[1], file, key)
        body = lines[at].rstrip("\r\n")
        lines[at] = _replace_value(body, change.new, file, key) + lines[at][len(body) :]
    result = "".join(lines)
    expected = copy.deepcopy(_load(file, text))
    for change in moved:
        _set(expected["config"][CLUSTER_KEY], change.pin.path, change.new)
    if _load(file, result) != expected:
        raise BumpError(
            file, CLUSTER_KEY, "the line edit would change more than the pins; edit this file by hand"
        )
    return result


class _FileConfig(ConfigReader):
    """The program's config reader, fed from a stack file's values instead of the Pulumi runtime."""

    def __init__(self, namespace: str, values: Mapping[str, str]) -> None:
        self.namespace = namespace
        self._config = values  # type: ignore[assignment]  # only .get(key) is used


def _cli_string(value: Any) -> str:
    """A value as the CLI hands it to the program: objects and lists as JSON, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def validate(file: str, text: str) -> None:
    """Run the program's own AWS-layer config validation on the file; ConfigError -> BumpError."""
    config = _load(file, text).get("config") or {}
    values = {k.split(":", 1)[1]: _cli_string(v) for k, v in config.items() if k.startswith(f"{PROJECT}:")}
    try:
        production = Field(f"{PROJECT}:production", values.get("production", "false")).boolean()
        parse_aws(
            _FileConfig(PROJECT, values),
            Field("aws:region", str(config.get("aws:region", DEFAULT_REGION))),
            production,
        )
    except ConfigError as exc:
        raise BumpError(file, exc.key, f"the program refuses it: got {exc.value!r}; {exc.allowed}") from None


# --------------------------------------------------------------------------------------------------
# Reporting (pure)
# --------------------------------------------------------------------------------------------------


def summary(results: Sequence[StackResult]) -> str:
    """Markdown: per stack, old -> new for every pin that moved; "no change" when none did."""
    out = ["## Version pins", ""]
    if not any(r.moved for r in results):
        pinned = any(r.stack.pins for r in results)
        out.append(
            "no change: " + ("every pin is already AWS's newest." if pinned else "no stack pins anything.")
        )
    for r in results:
        s = r.stack
        if not s.pins:
            out += ["", f"`{s.file}`: {s.note or 'nothing pinned'}; left alone."]
            continue
        out += ["", f"`{s.file}` (Kubernetes {s.version}, {s.region}):", ""]
        if not r.moved:
            out.append("no change.")
            continue
        out += ["| key | pinned → newest |", "|---|---|"]
        out += [f"| `{c.pin.key}` | `{c.pin.value}` → `{c.new}` |" for c in r.moved]
        kept = [c for c in r.changes if not c.moved]
        if kept:
            out += ["", "Unchanged: " + ", ".join(f"`{c.pin.key}` `{c.new}`" for c in kept) + "."]
    return "\n".join(out) + "\n"


def pr_body(summary_md: str, preview: str, run_url: str = "", limit: int = PR_BODY_LIMIT) -> str:
    """The pull request text: the summary, then the preview; a long preview keeps its head (the diff) and
    its tail (the resource counts) and says how much was cut and where the whole one is."""
    where = f" ([run log]({run_url}))" if run_url else ""
    head = f"{summary_md.rstrip()}\n\n### `pulumi preview` with the new pins{where}\n\n```\n"
    tail = "\n```\n"
    room = limit - len(head) - len(tail)
    if room < 1000:
        raise ValueError("the summary alone fills the pull request body")
    text = preview.replace("```", "'''").rstrip()  # keep the code fence closed
    if len(text) > room:
        lines = text.splitlines()
        end = lines[-40:]
        budget = room - sum(len(x) + 1 for x in end) - 200
        start: list[str] = []
        for line in lines[: len(lines) - len(end)]:
            if budget - len(line) - 1 < 0:
                break
            start.append(line)
            budget -= len(line) + 1
        cut = len(lines) - len(start) - len(end)
        text = "\n".join([*start, f"... {cut} lines cut here: the whole preview is in the run log ...", *end])
    return f"{head}{text}{tail}"


# --------------------------------------------------------------------------------------------------
# I/O: the AWS CLI, the stack files, the command line
# --------------------------------------------------------------------------------------------------


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{' '.join(argv)}: no answer in 120 s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


@dataclass(frozen=True)
class AwsCli:
    """`Aws` through the AWS CLI v2 (JSON output; the CLI follows DescribeAddonVersions' pages itself)."""

    run: Callable[[list[str]], str] = _run

    def ssm_parameter(self, name: str, region: str) -> str:
        out = self.run(
            ["aws", "ssm", "get-parameter", "--name", name, "--region", region, "--output", "json"]
        )
        return str(json.loads(out)["Parameter"]["Value"])

    def addon_versions(self, addon: str, kubernetes_version: str, region: str) -> Mapping[str, Any]:
        out = self.run(
            [
                "aws", "eks", "describe-addon-versions", "--addon-name", addon,
                "--kubernetes-version", kubernetes_version, "--region", region, "--output", "json",
            ]
        )  # fmt: skip
        return json.loads(out)


def _label(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def bump(names: Sequence[str], stacks_dir: Path, aws: Aws, write: bool = True) -> list[StackResult]:
    """Bump the named stacks (default: every stack that pins something); write the files that moved."""
    files = stack_files(stacks_dir) if stacks_dir.is_dir() else {}
    unknown = [n for n in names if n not in files]
    if unknown:
        raise BumpError(
            str(stacks_dir), None, f"no stack file for {', '.join(unknown)} (have {', '.join(files)})"
        )
    results = []
    for name in names or list(files):
        path = files[name]
        file, text = _label(path), path.read_text()
        stack = read_stack(file, text)
        if not stack.pins:
            if names:  # named on purpose: say why nothing moves (a production stack on `latest` is refused)
                if not stack.local:
                    validate(file, text)
                results.append(StackResult(stack))
            continue
        try:
            result = plan(stack, newest(stack, aws))
        except (RuntimeError, OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
            raise BumpError(file, None, f"AWS did not answer: {exc}") from None
        new_text = rewrite(file, text, result.changes)
        validate(file, new_text)
        if write and new_text != text:
            path.write_text(new_text)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None, aws: Aws | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "stacks", nargs="*", help="stack names (default: every stack file that pins something)"
    )
    parser.add_argument("--stacks-dir", type=Path, default=ROOT / "stacks")
    parser.add_argument("--summary", type=Path, help="also write the markdown summary here")
    parser.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    parser.add_argument("--pr-body", type=Path, metavar="PREVIEW_FILE", help="print the pull request body")
    parser.add_argument("--run-url", default="", help="with --pr-body: where the whole preview is")
    args = parser.parse_args(argv)
    if args.pr_body:
        if not args.summary:
            parser.error("--pr-body needs --summary (the file a bump run wrote)")
        print(pr_body(args.summary.read_text(), args.pr_body.read_text(), args.run_url), end="")
        return 0
    try:
        results = bump(args.stacks, args.stacks_dir, aws or AwsCli(), write=not args.dry_run)
    except BumpError as exc:
        print(f"bump_pins: {exc}", file=sys.stderr)
        return 1
    text = summary(results)
    print(text, end="")
    if args.summary:
        args.summary.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
