"""Point stacks at the team's Dask image by digest, editing one line of each stack file (or adding the block).

Why: the image is a fact of the stack, like its version pins (README, Operations). `adaptive-dask:dask.image`
is what the scheduler, the workers and the notebook all run; the `image` workflow
(.github/workflows/image.yml) builds `image/`, pushes it to each stack's own ECR repository and proposes
the move to the pushed digest as a pull request, written by this script. A production stack refuses a team
image pinned by tag alone (infra/config/kubernetes.py `_image`), and so does this script, for every stack.

The edit is line-level so everything else in the file stays byte for byte, comments included:
  - `adaptive-dask:dask:` with an `image:` line: that line's value is replaced (its quoting and trailing
    comment kept);
  - `adaptive-dask:dask:` without one: `image: <ref>` is added as the block's first key;
  - no `adaptive-dask:dask:` at all: the block (`adaptive-dask:dask:` + `image: <ref>`) is added after the
    last entry of `config:`.
Refused (exit 1, the message names the file and the key): a reference without `@sha256:<64 hex>`, a file
without a block `config:` mapping, a dask block or image value written inline or on several lines, a key
set twice. Running it again with the same reference changes nothing.

Which stacks: those named with --stack, or else every stack file whose `adaptive-dask:images` sets
`repository: true` (the stacks that have an ECR repository of their own to run the image from).

Usage:
  python3 .github/scripts/set_image.py --image REF [--stack NAME ...] [--stacks-dir stacks]
      Set one reference in the chosen stacks; prints a markdown summary (what changed in which file).
  python3 .github/scripts/set_image.py --images-json '{"dev": "REF", ...}' [--stacks-dir stacks]
      One reference per stack (the workflow's hand-off: each stack's own repository and digest).
  python3 .github/scripts/set_image.py --repositories [--stack NAME ...] [--stacks-dir stacks] < VARS_JSON
      Reads the GitHub variables (`toJSON(vars)`) on stdin and prints `<stack> <repository-url>` per chosen
      stack, from the variable IMAGE_REPOSITORY_URL_<STACK> (the stack's `imageRepositoryUrl` output;
      STACK upper-cased, other characters as `_`). Refuses a missing variable, a URL that is not an ECR
      repository, or one that is not the stack's own repository (`<namePrefix>-<stack>/dask`).
Standard library only: it runs on the bare runner before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROJECT = "adaptive-dask"
DASK_KEY = f"{PROJECT}:dask"
IMAGES_KEY = f"{PROJECT}:images"
PREFIX_KEY = f"{PROJECT}:namePrefix"
IMAGE_FIELD = "image"
IMAGE_KEY = f"{DASK_KEY}.{IMAGE_FIELD}"

# The program's image reference (infra/config/kubernetes.py `_IMAGE`), with the digest required.
DIGEST_REF = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?@(?P<digest>sha256:[a-f0-9]{64})$"
)
# Pulumi looks for Pulumi.<stack>.yaml (and .yml) in stackConfigDir.
STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.ya?ml$")
# An ECR private repository URL, as `aws.ecr.Repository.repository_url` reads.
ECR_URL = re.compile(
    r"^(?P<registry>[0-9]{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?)/"
    r"(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*)$"
)
# Restated from the program (tests/ci/test_image_workflow.py holds them to the same answers):
# infra/config/load.py DEFAULT_NAME_PREFIX and stack_name, infra/aws/images.py IMAGE_NAME.
DEFAULT_NAME_PREFIX = "adask"
REPOSITORY_IMAGE_NAME = "dask"
VARIABLE_PREFIX = "IMAGE_REPOSITORY_URL_"


class ImageError(Exception):
    """A stack file (or reference) this script will not edit; the message names the file and the key."""

    def __init__(self, file: str, key: str | None, why: str) -> None:
        self.file, self.key, self.why = file, key, why
        super().__init__(f"{file}: {key}: {why}" if key else f"{file}: {why}")


# --------------------------------------------------------------------------------------------------
# Reading lines (pure)
# --------------------------------------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    """A line YAML reads as data (not blank, not a comment)."""
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _split_key(line: str) -> tuple[str, str] | None:
    """(key, everything after its colon, line break excluded) of a block-mapping line, or None."""
    body = line.rstrip("\r\n").lstrip(" ")
    if not body.strip() or body.startswith(("#", "-")):
        return None
    if body[0] in "\"'":
        end = body.find(body[0], 1)
        m = re.match(r"\s*:(?=\s|$)", body[end + 1 :]) if end > 0 else None
        return (body[1:end], body[end + 1 + m.end() :]) if m else None
    m = re.search(r":(?=\s|$)", body)
    return (body[: m.start()].rstrip(), body[m.end() :]) if m else None


def _empty(rest: str) -> bool:
    """Nothing but an optional comment after a key's colon: its value is the indented block below."""
    return not rest.strip() or rest.strip().startswith("#")


@dataclass(frozen=True)
class Block:
    header: int  # the key's line
    lines: range  # the lines below it that belong to it (comments and blank lines included)
    indent: int | None  # indent of its keys; None: no key below it


def _block(lines: Sequence[str], header: int) -> Block:
    end, child = header + 1, None
    while end < len(lines) and (not _content(lines[end]) or _indent(lines[end]) > _indent(lines[header])):
        if child is None and _content(lines[end]):
            child = _indent(lines[end])
        end += 1
    return Block(header, range(header + 1, end), child)


def _find(lines: Sequence[str], within: range, indent: int, name: str, file: str, key: str) -> int | None:
    hits = [
        i
        for i in within
        if _content(lines[i]) and _indent(lines[i]) == indent and (_split_key(lines[i]) or ("",))[0] == name
    ]
    if len(hits) > 1:
        raise ImageError(file, key, f"set {len(hits)} times (lines {', '.join(str(i + 1) for i in hits)})")
    return hits[0] if hits else None


def _config(lines: Sequence[str], file: str) -> Block:
    at = _find(lines, range(len(lines)), 0, "config", file, "config")
    if at is None:
        raise ImageError(file, "config", "cannot find the top-level `config:` mapping")
    split = _split_key(lines[at])
    assert split is not None
    if not _empty(split[1]):
        raise ImageError(file, "config", "is written inline; write it as an indented block")
    return _block(lines, at)


# After a key's colon: one quoted or plain scalar (not a block scalar, anchor, alias, tag or flow collection),
# then an optional comment (`#` after whitespace; a `#` inside a plain scalar is part of it).
_VALUE = re.compile(
    r"""^(?P<lead>\s*)(?P<value>"[^"\\]*"|'[^']*'|[^\s#"'|>&*!{\[].*?)(?P<trail>\s*(?:\s#.*)?)$"""
)


def _scalar(rest: str) -> re.Match[str] | None:
    """The single scalar after a key's colon (quoted or plain, with an optional trailing comment)."""
    return _VALUE.match(rest)


def _truthy(rest: str) -> bool:
    m = _scalar(rest)
    return bool(m) and m["value"].strip("\"'").strip().lower() == "true"


# --------------------------------------------------------------------------------------------------
# Which stacks (pure)
# --------------------------------------------------------------------------------------------------


def has_repository(text: str) -> bool:
    """Whether the stack file sets `adaptive-dask:images` → `repository: true` (block or flow mapping).
    Unreadable files count as no: the edit itself refuses them with a message."""
    lines = text.splitlines(keepends=True)
    try:
        config = _config(lines, "")
        if config.indent is None:
            return False
        at = _find(lines, config.lines, config.indent, IMAGES_KEY, "", IMAGES_KEY)
    except ImageError:
        return False
    if at is None:
        return False
    rest = (_split_key(lines[at]) or ("", ""))[1]
    if not _empty(rest):  # {repository: true, keepImages: 10}
        return bool(re.search(r"""[{,]\s*["']?repository["']?\s*:\s*["']?true["']?\s*[,}]""", rest, re.I))
    images = _block(lines, at)
    if images.indent is None:
        return False
    try:
        found = _find(lines, images.lines, images.indent, "repository", "", "")
    except ImageError:
        return False
    return found is not None and _truthy((_split_key(lines[found]) or ("", ""))[1])


def name_prefix(text: str) -> str:
    """The stack's `adaptive-dask:namePrefix` (default adask), read as the line says it."""
    lines = text.splitlines(keepends=True)
    try:
        config = _config(lines, "")
        at = _find(lines, config.lines, config.indent or 0, PREFIX_KEY, "", PREFIX_KEY)
    except ImageError:
        return DEFAULT_NAME_PREFIX
    m = _scalar((_split_key(lines[at]) or ("", ""))[1]) if at is not None else None
    return m["value"].strip().strip("\"'") if m else DEFAULT_NAME_PREFIX


def repository_name(prefix: str, stack: str) -> str:
    """The stack's ECR repository: `<namePrefix>-<stack>/dask` (as infra/config/load.py names stacks)."""
    safe_stack = re.sub(r"[^a-z0-9-]", "-", stack.lower())
    return f"{f'{prefix}-{safe_stack}'[:40].rstrip('-')}/{REPOSITORY_IMAGE_NAME}"


def variable_name(stack: str) -> str:
    return VARIABLE_PREFIX + re.sub(r"[^A-Z0-9]", "_", stack.upper())


def stack_files(stacks_dir: Path) -> dict[str, Path]:
    """Stack name -> its config file."""
    found: dict[str, Path] = {}
    if stacks_dir.is_dir():
        for p in sorted(stacks_dir.iterdir()):
            m = STACK_FILE.match(p.name)
            if p.is_file() and m:
                found.setdefault(m["stack"], p)
    return found


def choose(stacks_dir: Path, names: Sequence[str]) -> dict[str, Path]:
    """The named stacks (each must have a file), or every stack with an image repository of its own."""
    files = stack_files(stacks_dir)
    if names:
        missing = [n for n in names if n not in files]
        if missing:
            raise ImageError(str(stacks_dir), None, f"no Pulumi.<stack>.yaml for {', '.join(missing)}")
        return {n: files[n] for n in dict.fromkeys(names)}
    chosen = {s: p for s, p in files.items() if has_repository(p.read_text())}
    if not chosen:
        raise ImageError(
            str(stacks_dir),
            f"{IMAGES_KEY}.repository",
            "no stack file sets it to true: no stack has a repository to run the image from "
            "(set it, or name the stacks with --stack)",
        )
    return chosen


def repositories(chosen: dict[str, Path], variables: dict[str, object]) -> dict[str, str]:
    """Each chosen stack's repository URL, from its IMAGE_REPOSITORY_URL_<STACK> variable; refuses a
    missing variable, a URL that is not ECR, and a URL of another stack's repository."""
    names: dict[str, str] = {}
    out: dict[str, str] = {}
    for stack, path in chosen.items():
        var = variable_name(stack)
        if var in names:
            raise ImageError(
                str(path), None, f"stacks {names[var]} and {stack} would share the variable {var}"
            )
        names[var] = stack
        url = variables.get(var)
        where = f"{path.as_posix()} ({stack})"
        if not isinstance(url, str) or not url.strip():
            raise ImageError(
                where,
                f"{IMAGES_KEY}.repository",
                f"the GitHub variable {var} (environment `image`) is not set; set it to "
                f"`pulumi stack output imageRepositoryUrl --stack {stack}`",
            )
        url = url.strip()
        m = ECR_URL.match(url)
        if not m:
            raise ImageError(
                where, var, f"{url!r} is not an ECR repository URL (<account>.dkr.ecr.<region>...)"
            )
        want = repository_name(name_prefix(path.read_text()), stack)
        if m["name"] != want:
            raise ImageError(where, var, f"{url!r} is not this stack's repository ({want})")
        out[stack] = url
    return out


# --------------------------------------------------------------------------------------------------
# The edit (pure)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    file: str
    old: str | None  # the image before (None: there was no image line)
    new: str
    how: str  # "replaced", "added the key", "added the block", "unchanged"

    @property
    def changed(self) -> bool:
        return self.how != "unchanged"


def check_ref(file: str, ref: str) -> None:
    if not DIGEST_REF.match(ref):
        why = (
            "is pinned by tag only; deploy by digest (<repository>@sha256:<64 hex>): a tag can be re-pushed"
            if "@" not in ref
            else "is not an image reference pinned by digest (<repository>[:tag]@sha256:<64 lowercase hex>)"
        )
        raise ImageError(file, IMAGE_KEY, f"{ref!r} {why}")


def _newline(lines: Sequence[str]) -> str:
    return "\r\n" if lines and lines[0].endswith("\r\n") else "\n"


def set_image(file: str, text: str, ref: str) -> tuple[str, Change]:
    """`text` with `adaptive-dask:dask.image` set to `ref`, every other byte kept."""
    check_ref(file, ref)
    lines = text.splitlines(keepends=True)
    nl = _newline(lines)
    config = _config(lines, file)
    step = config.indent or 2
    dask = _find(lines, config.lines, step, DASK_KEY, file, DASK_KEY) if config.indent else None
    if dask is None:
        content = [i for i in config.lines if _content(lines[i])]
        after = content[-1] if content else config.header
        if not lines[after].endswith("\n"):
            lines[after] += nl
        block = [f"{' ' * step}{DASK_KEY}:{nl}", f"{' ' * (2 * step)}{IMAGE_FIELD}: {ref}{nl}"]
        lines[after + 1 : after + 1] = block
        return "".join(lines), Change(file, None, ref, "added the block")
    rest = (_split_key(lines[dask]) or ("", ""))[1]
    if not _empty(rest):
        raise ImageError(
            file, DASK_KEY, f"is written inline ({rest.strip()!r}); write it as an indented block"
        )
    block = _block(lines, dask)
    indent = block.indent if block.indent is not None else _indent(lines[dask]) + step
    at = _find(lines, block.lines, indent, IMAGE_FIELD, file, IMAGE_KEY)
    if at is None:
        if not lines[dask].endswith("\n"):
            lines[dask] += nl
        lines.insert(dask + 1, f"{' ' * indent}{IMAGE_FIELD}: {ref}{nl}")
        return "".join(lines), Change(file, None, ref, "added the key")
    body = lines[at].rstrip("\r\n")
    key_rest = (_split_key(body) or ("", ""))[1]
    m = _scalar(key_rest)
    if not m or _empty(key_rest):
        raise ImageError(file, IMAGE_KEY, f"is not a single value on its line ({body.strip()!r})")
    old_raw = m["value"]
    quote = old_raw[0] if old_raw[0] in "\"'" else ""
    old = old_raw[1:-1] if quote else old_raw.strip()
    if old == ref:
        return text, Change(file, old, ref, "unchanged")
    head = body[: len(body) - len(key_rest)]
    lines[at] = f"{head}{m['lead']}{quote}{ref}{quote}{m['trail']}" + lines[at][len(body) :]
    return "".join(lines), Change(file, old, ref, "replaced")


# --------------------------------------------------------------------------------------------------
# Reporting (pure) and the command line
# --------------------------------------------------------------------------------------------------


def summary(changes: Sequence[Change]) -> str:
    """Markdown: per stack file, what `adaptive-dask:dask.image` was and is."""
    out = []
    for c in changes:
        if c.how == "replaced":
            out.append(f"- `{c.file}`: `{IMAGE_KEY}` `{c.old}` → `{c.new}`")
        elif c.how == "added the key":
            out.append(f"- `{c.file}`: `{IMAGE_KEY}` added (was the stock image): `{c.new}`")
        elif c.how == "added the block":
            out.append(f"- `{c.file}`: `{DASK_KEY}` block added (was the stock image), `image: {c.new}`")
        else:
            out.append(f"- `{c.file}`: already `{c.new}`; no change")
    return "\n".join(out) + "\n"


def apply(targets: dict[Path, str]) -> list[Change]:
    """Edit every file (all checked first: a refusal leaves every file as it was)."""
    edits = []
    for path, ref in targets.items():
        # bytes, not read_text(): universal newlines would turn a CRLF file into an LF one
        edits.append((path, *set_image(path.as_posix(), path.read_bytes().decode(), ref)))
    for path, text, change in edits:
        if change.changed:
            path.write_bytes(text.encode())
    return [change for _, _, change in edits]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", metavar="REF", help="<repository>@sha256:<64 hex>, for every chosen stack")
    what.add_argument("--images-json", metavar="JSON", help='{"<stack>": "<ref>", ...}')
    what.add_argument("--repositories", action="store_true", help="print each stack's repository URL")
    parser.add_argument("--stack", action="append", default=[], metavar="NAME", help="default: see above")
    parser.add_argument("--stacks-dir", type=Path, default=Path("stacks"))
    args = parser.parse_args(argv)
    try:
        if args.images_json is not None:
            if args.stack:
                parser.error("--images-json names its stacks itself")
            images = json.loads(args.images_json)
            if (
                not isinstance(images, dict)
                or not images
                or not all(isinstance(v, str) for v in images.values())
            ):
                parser.error('--images-json must be a non-empty {"<stack>": "<ref>"} object')
            chosen = choose(args.stacks_dir, list(images))
            changes = apply({chosen[s]: images[s] for s in chosen})
        elif args.repositories:
            variables = json.loads(sys.stdin.read() or "{}")
            if not isinstance(variables, dict):
                parser.error("stdin must hold a JSON object of variables")
            for stack, url in repositories(choose(args.stacks_dir, args.stack), variables).items():
                print(f"{stack} {url}")
            return 0
        else:
            chosen = choose(args.stacks_dir, args.stack)
            changes = apply({p: args.image for p in chosen.values()})
    except ImageError as exc:
        print(f"set_image: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(summary(changes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
