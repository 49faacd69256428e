"""Text rewriting: what makes cluster-shaped command lines, env values and probes work on one machine.

`$(VAR)` expansion as Kubernetes does it, and one-pass rewriting of mount paths, declared container
ports and Service DNS names (the rules for Services are built by testbed/kube/services.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A `<name>.<namespace>.svc[.cluster.local]` DNS name: left unresolved, it means "no such Service yet".
CLUSTER_DNS = re.compile(
    r"(?<![\w.\-])[a-z0-9]([a-z0-9\-]*[a-z0-9])?\.[a-z0-9\-]+\.svc(\.cluster\.local)?(?![\w\-])"
)
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, unknown kept verbatim, `$$` → `$`."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, text)


@dataclass
class Rewriter:
    """Ordered (regex, literal replacement) rules applied in ONE left-to-right pass.

    One pass matters: a mountPath `/tmp` must not rewrite the `/tmp/...` folder that `/opt/x` was just
    rewritten to. At each position the first rule (in order added) that matches wins.
    """

    rules: list[tuple[str, str]] = field(default_factory=list)
    _compiled: re.Pattern[str] | None = None

    def add(self, pattern: str, repl: str) -> None:
        self.rules.append((pattern, repl))
        self._compiled = None

    def extend(self, other: Rewriter) -> None:
        for pattern, repl in other.rules:
            self.add(pattern, repl)

    def path(self, mount_path: str, folder: str) -> None:
        mp = mount_path.rstrip("/") or "/"
        self.add(re.escape(mp) + r"(?=$|[/:;,\s'\"=])", folder)

    def __call__(self, text: str) -> str:
        if not self.rules:
            return text
        if self._compiled is None:
            self._compiled = re.compile("|".join(f"(?P<r{i}>{p})" for i, (p, _) in enumerate(self.rules)))

        def repl(m: re.Match[str]) -> str:
            name = next(k for k, v in m.groupdict().items() if v is not None)
            return self.rules[int(name[1:])][1]

        return self._compiled.sub(repl, text)


def port_rules(ports: dict[int, int]) -> Rewriter:
    """Rewrite declared container ports: `8786` as a whole word after `=`/`:`/start, e.g. `--port 8786`,
    `--port=8786`, `:8787`, `tcp://0.0.0.0:8786`, `http://localhost:8787/health`."""
    rw = Rewriter()
    for declared, local in sorted(ports.items(), key=lambda kv: -len(str(kv[0]))):
        rw.add(rf"(?:(?<=^)|(?<=[=:\s])){declared}(?=$|[/\s,;\"'])", str(local))
    return rw
