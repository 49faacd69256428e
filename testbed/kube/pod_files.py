"""The pod filesystem of the test kubelet: per-pod folders for volumes and the ServiceAccount, and each
container's environment, command line and working directory resolved on this machine.

- The image is ignored: the command runs with `.venv/bin` first on PATH (`dask`, `python` → the venv;
  the Kubelet's `venv_bin` may choose another venv per pod).
- Volume mountPaths become per-pod folders; every occurrence of a mountPath in args/env/workingDir is
  rewritten to its folder, as are declared container ports and Service DNS names (testbed/kube/rewriting.py).
- The ServiceAccount files (a real TokenRequest token bound to the pod, ca.crt, namespace) go to a
  per-pod folder given in DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR; the standard mount path
  /var/run/secrets/kubernetes.io/serviceaccount is rewritten to it. A pod with
  `automountServiceAccountToken: false` that mounts its own projected volume (a serviceAccountToken
  source) at that path gets that volume as its folder instead: the token with the volume's
  `expirationSeconds`, rewritten at 80% of it as the kubelet does.
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.kube.containers import Container
from testbed.kube.nodes import parse_quantity
from testbed.kube.rest import Rest
from testbed.kube.rewriting import CLUSTER_DNS, Rewriter, expand_vars, port_rules

if TYPE_CHECKING:
    from testbed.kube.runner import PodRunner

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_DIR_ENV = "DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PodFiles:
    """Materialises one pod here: the SA token folder, volume folders, and each container's env/argv/cwd."""

    def __init__(self, runner: PodRunner) -> None:
        self.runner = runner
        self.kubelet = runner.kubelet
        self.namespace = runner.namespace
        self.name = runner.name
        self.dir = runner.dir
        self.sa_dir = self.dir / "serviceaccount"
        self.token_file = "token"
        self.token_seconds = 3600  # the lifetime asked for; a projected volume's expirationSeconds
        self.token_written = 0.0  # time.monotonic() of the last write
        self.projected_sa: str | None = None  # the projected volume mounted at SA_MOUNT, if any
        self.token: str = ""
        self.token_history: list[str] = []
        self.volume_dirs: dict[str, Path] = {}
        self.services = Rewriter()
        self.rewriter = Rewriter()  # the last container's rules (mount paths, Services, ports)

    @property
    def pod(self) -> dict[str, Any]:
        return self.runner.pod

    @property
    def ports(self) -> dict[int, int]:
        return self.runner.ports

    def write_token(self) -> None:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        # Two TokenRequests in the same second yield byte-identical JWTs on 1.20 (no jti claim), so a
        # rotation also varies the lifetime by a second to be sure the new token differs.
        lifetime = self.token_seconds + len(self.token_history) + (1 if self.token else 0)
        token = self.kubelet.kube.service_account_token(
            self.namespace, sa, bound_pod=self.pod, expiration_seconds=lifetime
        )
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.sa_dir / ".token.tmp"
        tmp.write_text(token)
        tmp.replace(self.sa_dir / self.token_file)  # atomic: a reader never sees half a token
        if self.token:
            self.token_history.append(self.token)
        self.token = token
        self.token_written = time.monotonic()

    def refresh_token(self, now: float) -> None:
        """Rewrite the token once 80% of its lifetime has passed, as the kubelet does for projected tokens."""
        if self.token and now - self.token_written > 0.8 * self.token_seconds:
            self.write_token()

    def _token_projection(self) -> tuple[str, dict[str, Any]] | None:
        """(volume name, serviceAccountToken source) of a projected volume mounted at SA_MOUNT, if any."""
        spec = self.pod["spec"]
        mounted = {
            m["name"]
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            for m in c.get("volumeMounts") or []
            if m["mountPath"].rstrip("/") == SA_MOUNT
        }
        for vol in spec.get("volumes") or []:
            if vol["name"] in mounted and "projected" in vol:
                for src in vol["projected"].get("sources") or []:
                    if "serviceAccountToken" in src:
                        return vol["name"], src["serviceAccountToken"]
        return None

    def prepare(self) -> None:
        """Token, volumes and every container's env/argv; raises while something is missing (a ConfigMap,
        a Service named in the command line), which the runner reports and retries."""
        spec = self.pod["spec"]
        rest = self.kubelet.rest
        projection = self._token_projection()
        if projection is not None:
            self.projected_sa = projection[0]
            self.sa_dir = self.dir / "volumes" / projection[0]
            self.token_file = projection[1]["path"]
            self.token_seconds = int(projection[1].get("expirationSeconds", 3600))
        elif spec.get("automountServiceAccountToken", True):
            self.write_token()
            shutil.copyfile(self.kubelet.kube.ca_file, self.sa_dir / "ca.crt")
            (self.sa_dir / "namespace").write_text(self.namespace)
        self.volume_dirs = {}
        for vol in spec.get("volumes") or []:
            d = self.dir / "volumes" / vol["name"]
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
            self.volume_dirs[vol["name"]] = d
            if "configMap" in vol:
                self._project_map(d, "configmaps", vol["configMap"]["name"], vol["configMap"], rest)
            elif "secret" in vol:
                self._project_map(d, "secrets", vol["secret"]["secretName"], vol["secret"], rest)
            elif "downwardAPI" in vol:
                self._project_downward(d, vol["downwardAPI"].get("items") or [])
            elif "projected" in vol:
                for src in vol["projected"].get("sources") or []:
                    if "configMap" in src:
                        self._project_map(d, "configmaps", src["configMap"]["name"], src["configMap"], rest)
                    elif "secret" in src:
                        self._project_map(d, "secrets", src["secret"]["name"], src["secret"], rest)
                    elif "downwardAPI" in src:
                        self._project_downward(d, src["downwardAPI"].get("items") or [])
                    elif "serviceAccountToken" in src and vol["name"] == self.projected_sa:
                        self.token = ""  # a fresh folder: a first token, not a rotation
                        self.write_token()
                    elif "serviceAccountToken" in src:
                        sa = spec.get("serviceAccountName") or "default"
                        tok = self.kubelet.kube.service_account_token(self.namespace, sa, bound_pod=self.pod)
                        (d / src["serviceAccountToken"]["path"]).write_text(tok)
            # emptyDir, hostPath and anything else: an empty per-pod folder
        self.services = self.kubelet.services.rules(self.namespace)
        if self.kubelet.rewrite_config_files:
            self._rewrite_config_files()
        for c in self.runner.containers:
            self.materialise(c)

    def _rewrite_config_files(self) -> None:
        """The text files of ConfigMap volumes, rewritten as command lines are (Kubelet's
        `rewrite_config_files`): Service DNS names (no DNS here) and mount paths (per-pod folders here)
        named in a config file resolve as they would in the pod. Every container's mounts count."""
        spec = self.pod["spec"]
        rw = Rewriter()
        mounts = [
            m
            for c in [*(spec.get("initContainers") or []), *spec["containers"]]
            for m in c.get("volumeMounts") or []
        ]
        for m in sorted(mounts, key=lambda m: -len(m["mountPath"])):
            folder = self.volume_dirs.get(m["name"])
            if folder is not None and not m.get("subPath"):
                rw.path(m["mountPath"], str(folder))
        rw.extend(self.services)
        for vol in spec.get("volumes") or []:
            if "configMap" not in vol:
                continue
            for f in self.volume_dirs[vol["name"]].rglob("*"):
                try:
                    text = f.read_text()
                except (UnicodeDecodeError, IsADirectoryError):
                    continue
                f.write_text(rw(text))

    def _project_map(self, d: Path, kind: str, name: str, src: dict[str, Any], rest: Rest) -> None:
        obj = rest.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        if obj is None:
            if src.get("optional"):
                return
            raise RuntimeError(f"{kind[:-1]} {self.namespace}/{name} not found")
        data: dict[str, bytes] = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        items = src.get("items")
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, rel in pairs:
            if key not in data:
                if src.get("optional"):
                    continue
                raise RuntimeError(f"key {key!r} not in {kind[:-1]} {self.namespace}/{name}")
            out = d / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data[key])

    def _project_downward(self, d: Path, items: list[dict[str, Any]]) -> None:
        for item in items:
            value = self._field_value(item["fieldRef"]["fieldPath"]) if "fieldRef" in item else ""
            if "resourceFieldRef" in item:
                value = self._resource_value(item["resourceFieldRef"], None)
            (d / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (d / item["path"]).write_text(value)

    def _field_value(self, path: str) -> str:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
            "status.hostIP": "127.0.0.1",
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
        }
        if path in simple:
            return str(simple[path])
        if path in ("metadata.labels", "metadata.annotations"):
            return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
        raise RuntimeError(f"unsupported downward API fieldPath {path!r}")

    def _resource_value(self, ref: dict[str, Any], container: Container | None) -> str:
        name = ref.get("containerName") or (container.name if container else None)
        cspec = next((c for c in self.pod["spec"]["containers"] if name is None or c["name"] == name), {})
        kind, _, res = ref["resource"].partition(".")
        resources = cspec.get("resources") or {}
        raw = (resources.get(kind) or {}).get(res)
        if raw is None and kind == "requests":
            raw = (resources.get("limits") or {}).get(res)
        if raw is None:
            node = self.kubelet.node_specs.get(self.pod["spec"].get("nodeName", ""))
            raw = (
                {"cpu": node.cpu, "memory": node.memory}.get(res, "0") if (node and kind == "limits") else "0"
            )
        value = parse_quantity(raw)
        divisor = parse_quantity(ref.get("divisor") or "1") or Decimal(1)  # the API defaults it to "0"
        return str(math.ceil(value / divisor))

    def materialise(self, c: Container) -> None:
        spec = c.spec
        rw = Rewriter()
        mounts = sorted(spec.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"]))
        for m in mounts:
            if m["mountPath"].rstrip("/") == SA_MOUNT and m["name"] != self.projected_sa:
                # The 1.20 ServiceAccount admission plugin mounts the legacy token Secret here; like
                # EKS (bound, projected tokens) we give the per-pod TokenRequest folder instead.
                continue
            folder = self.volume_dirs.get(m["name"])
            if folder is None:
                continue
            rw.path(m["mountPath"], str(folder / m["subPath"]) if m.get("subPath") else str(folder))
        if self.pod["spec"].get("automountServiceAccountToken", True) and self.projected_sa is None:
            rw.path(SA_MOUNT, str(self.sa_dir))
        rw.extend(self.services)
        rw.extend(port_rules(self.ports))
        self.rewriter = rw

        k = self.kubelet
        venv_bin = k.venv_bin_for(self.pod)
        env: dict[str, str] = {
            "PATH": f"{venv_bin}:{SYSTEM_PATH}",
            "HOME": str(self.dir / "home"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "HOSTNAME": self.name,
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(k.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(k.api_port),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{k.api_port}",
        }
        (self.dir / "home").mkdir(exist_ok=True)
        if self.pod["spec"].get("automountServiceAccountToken", True) or self.projected_sa is not None:
            env[SA_DIR_ENV] = str(self.sa_dir)
        env.update(k.extra_env)
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            if "configMapRef" in src:
                obj = k.rest.get_or_none(
                    f"/api/v1/namespaces/{self.namespace}/configmaps/{src['configMapRef']['name']}"
                )
                env.update({prefix + kk: vv for kk, vv in ((obj or {}).get("data") or {}).items()})
            if "secretRef" in src:
                obj = k.rest.get_or_none(
                    f"/api/v1/namespaces/{self.namespace}/secrets/{src['secretRef']['name']}"
                )
                env.update(
                    {
                        prefix + kk: base64.b64decode(vv).decode()
                        for kk, vv in ((obj or {}).get("data") or {}).items()
                    }
                )
        for e in spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = rw(expand_vars(e["value"], env))
            elif "valueFrom" in e:
                env[e["name"]] = self._env_from(e["valueFrom"], c)
            else:
                env[e["name"]] = ""
        if "PATH" in {e["name"] for e in spec.get("env") or []}:
            env["PATH"] = f"{venv_bin}:{env['PATH']}"
        command = [expand_vars(a, env) for a in spec.get("command") or []]
        args = [expand_vars(a, env) for a in spec.get("args") or []]
        argv = [rw(a) for a in command + args]
        for text in [*argv, *(env[e["name"]] for e in spec.get("env") or [])]:
            m = CLUSTER_DNS.search(text)
            if m:
                # As in a cluster, the name does not resolve until the Service exists: fail this
                # attempt (CreateContainerConfigError) and retry, rather than start a doomed process.
                raise RuntimeError(f"Service DNS name {m.group(0)!r} does not resolve (no such Service yet)")
        c.env = env
        c.argv = self.resolve_argv(argv, env) if argv else []
        workdir = spec.get("workingDir")
        c.cwd = rw(workdir) if workdir else str(self.dir / "home")
        if not os.path.isdir(c.cwd):
            c.cwd = str(self.dir / "home")

    def _env_from(self, vf: dict[str, Any], c: Container) -> str:
        rest = self.kubelet.rest
        if "fieldRef" in vf:
            return self._field_value(vf["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in vf:
            return self._resource_value(vf["resourceFieldRef"], c)
        for key, kind, decode in (
            ("configMapKeyRef", "configmaps", False),
            ("secretKeyRef", "secrets", True),
        ):
            if key in vf:
                ref = vf[key]
                obj = rest.get_or_none(f"/api/v1/namespaces/{self.namespace}/{kind}/{ref['name']}")
                data = (obj or {}).get("data") or {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return ""
                    raise RuntimeError(f"{kind[:-1]} {ref['name']} key {ref['key']} not found")
                return base64.b64decode(data[ref["key"]]).decode() if decode else str(data[ref["key"]])
        raise RuntimeError(f"unsupported valueFrom {vf}")

    def rewrite(self, text: str) -> str:
        return self.rewriter(text)

    def command(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """An exec hook's or probe's command as run here: `$(VAR)` expanded, paths/ports rewritten."""
        return self.resolve_argv([self.rewrite(expand_vars(a, env)) for a in argv], env)

    @staticmethod
    def resolve_argv(argv: list[str], env: dict[str, str]) -> list[str]:
        """The image is ignored: resolve the executable on this machine, venv first."""
        if not argv:
            return argv
        exe = argv[0]
        if "/" in exe:
            if not os.path.exists(exe):
                alt = shutil.which(os.path.basename(exe), path=env.get("PATH"))
                if alt:
                    exe = alt
        else:
            exe = shutil.which(exe, path=env.get("PATH")) or exe
        return [exe, *argv[1:]]
