"""`python -m dask_adaptive client-config --namespace NS`: connect a laptop to the stack's TLS scheduler.

The scheduler accepts only clients holding a certificate of the stack's CA (mutual TLS). The stack
keeps one for users in Secret `dask-client-tls` (type kubernetes.io/tls: `ca.crt`, `tls.crt`,
`tls.key`); reading that Secret is what RBAC grants to people allowed to use the cluster. This
command reads it through the user's own kubeconfig and writes, into one private folder per
kubeconfig context and namespace (default `~/.config/dask-adaptive/<context>/<namespace>/`, mode
0700; every file 0600):

- `ca.crt`, `tls.crt`, `tls.key`;
- `dask-adaptive-tls.yaml`: dask config naming them (`distributed.comm.tls.ca-file`,
  `distributed.comm.tls.client.cert` / `.key`).

It prints `export DASK_CONFIG=<folder>` on stdout (the how-to goes to stderr), so
`eval "$(python -m dask_adaptive client-config --namespace NS)"` then
`kubectl -n NS port-forward svc/dask-scheduler 8786:8786` and a plain
`Client("tls://localhost:8786")` connects. Dask reads `DASK_CONFIG` as one more config folder, on top
of `~/.config/dask` (which it still reads), so nothing of the user's own config is replaced or
edited; two stacks never share a file. `require-encryption` is deliberately not set: a `tcp://`
LocalCluster in the same shell keeps working, and the stack's scheduler refuses plaintext anyway.

`tls://localhost` works although the scheduler's certificate names only the service's DNS names:
distributed verifies the peer's chain against the CA (both ways) and turns hostname checking off
(`Security._get_tls_context`: `check_hostname = False`), so the CA is what authenticates.

Re-running refreshes the files (after a certificate rotation by `pulumi up`). A folder holding files
this command did not write is refused unless `--force`. The `kubernetes` package is imported only
here, lazily: the preload, which runs in the stock Dask image, never needs it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shlex
import ssl
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET = "dask-client-tls"
KEYS = ("ca.crt", "tls.crt", "tls.key")
CONFIG_NAME = "dask-adaptive-tls.yaml"
MARKER = "# Written by `python -m dask_adaptive client-config`"
DEFAULT_ROOT = Path("~/.config/dask-adaptive")


class ClientConfigError(Exception):
    """A problem the user can fix; the message says what and how."""


@dataclass(frozen=True)
class ClientTls:
    ca: str
    cert: str
    key: str


def decode_secret(data: Mapping[str, str] | None, where: str) -> ClientTls:
    """The three PEMs from a Secret's base64 `data`; pure. Names every missing or malformed key."""
    data = data or {}
    missing = [k for k in KEYS if not data.get(k)]
    if missing:
        raise ClientConfigError(
            f"Secret {where} lacks {', '.join(missing)} (it has: {', '.join(sorted(data)) or 'no data'}); "
            f"it must hold {', '.join(KEYS)} - the stack writes it with dask.tls on: run `pulumi up`"
        )
    values = {}
    for k in KEYS:
        try:
            text = base64.b64decode(data[k], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise ClientConfigError(f"Secret {where}: {k} is not base64 PEM text ({e})") from e
        if "-----BEGIN " not in text:
            raise ClientConfigError(f"Secret {where}: {k} is not PEM (no -----BEGIN line)")
        values[k] = text
    return ClientTls(values["ca.crt"], values["tls.crt"], values["tls.key"])


def dask_config_yaml(folder: Path, namespace: str, context: str) -> str:
    """The dask config naming the files; absolute paths, so it works from any working directory."""
    ca, cert, key = (str(folder / k) for k in KEYS)
    return (
        f"{MARKER} for namespace {namespace} (kubeconfig context {context}).\n"
        f"# Use: export DASK_CONFIG={shlex.quote(str(folder))}; then Client('tls://localhost:8786')\n"
        "# after `kubectl -n NAMESPACE port-forward svc/dask-scheduler 8786:8786`.\n"
        "distributed:\n"
        "  comm:\n"
        "    tls:\n"
        f"      ca-file: {_yaml_str(ca)}\n"
        "      client:\n"
        f"        cert: {_yaml_str(cert)}\n"
        f"        key: {_yaml_str(key)}\n"
    )


def _yaml_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def safe_name(text: str) -> str:
    """A folder name for a context such as `arn:aws:eks:eu-west-1:1234:cluster/adask-dev`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "default"


def default_folder(context: str, namespace: str) -> Path:
    return DEFAULT_ROOT.expanduser() / safe_name(context) / safe_name(namespace)


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` this command would replace but did not write (no marker in its YAML)."""
    ours = folder / CONFIG_NAME
    with contextlib.suppress(OSError):
        if ours.read_text().startswith(MARKER):
            return []
    return [n for n in (*KEYS, CONFIG_NAME) if (folder / n).exists()]


# ----------------------------------------------------------------------------- I/O
def read_secret(
    namespace: str, name: str, kubeconfig: str | None, context: str | None
) -> tuple[ClientTls, str]:
    """The Secret's PEMs and the kubeconfig context used, through the user's kubeconfig."""
    try:
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
    except ImportError as e:
        raise ClientConfigError(
            "client-config needs the `kubernetes` package: pip install 'kubernetes==37.0.2' "
            "(pinned in requirements.txt)"
        ) from e
    where_kc = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if kubeconfig and not Path(kubeconfig).expanduser().is_file():
        raise ClientConfigError(f"kubeconfig {kubeconfig} does not exist")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = context or (active or {}).get("name")
        if context and context not in {c.get("name") for c in contexts or ()}:
            raise ClientConfigError(f"kubeconfig {where_kc} has no context {context!r}")
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as e:
        raise ClientConfigError(
            f"cannot use kubeconfig {where_kc}: {e}; pass --kubeconfig/--context or set KUBECONFIG "
            "(on EKS: `aws eks update-kubeconfig --name <clusterName>`)"
        ) from e
    where = f"{namespace}/{name}"
    try:
        with api:
            secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace, _request_timeout=30)
    except ApiException as e:
        raise ClientConfigError(_api_error(e.status, where, namespace, name, chosen)) from e
    except Exception as e:  # urllib3's connection errors: name the server and the context
        server = getattr(getattr(api, "configuration", None), "host", "?")
        raise ClientConfigError(
            f"cannot reach the Kubernetes API at {server} (context {chosen}): {type(e).__name__}: {e}"
        ) from e
    return decode_secret(secret.data, where), str(chosen or "default")


def _api_error(status: int | None, where: str, namespace: str, name: str, context: Any) -> str:
    if status == 404:
        return (
            f"Secret {where} not found (context {context}): is the namespace right "
            "(`pulumi stack output daskNamespace`), is the stack deployed with dask.tls on? "
            f"`kubectl -n {namespace} get secrets` lists what is there"
        )
    if status == 403:
        return (
            f"forbidden to read Secret {where} (context {context}): your identity needs `get` on "
            f"secrets/{name} in namespace {namespace}; ask the cluster's admin for it (check with "
            f"`kubectl auth can-i get secret/{name} -n {namespace}`)"
        )
    if status == 401:
        return f"the API server refused your credentials (context {context}): log in again, then retry"
    return f"reading Secret {where} failed with HTTP {status} (context {context})"


def write_files(folder: Path, tls: ClientTls, config_yaml: str, force: bool = False) -> Path:
    """Write the PEMs and the YAML atomically (temp file + rename), private, after checking the pair.

    A folder it creates is 0700; an existing one keeps its mode (it may be shared, e.g. the user's own
    ~/.config or a project folder): the files themselves are 0600 either way."""
    created = not folder.exists()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    foreign = foreign_files(folder)
    if foreign and not force:
        raise ClientConfigError(
            f"{folder} holds {', '.join(foreign)} not written by client-config; "
            "choose another --output-dir, or pass --force to replace them"
        )
    if created:
        folder.chmod(0o700)  # mkdir's mode is masked by the umask
    contents = {"ca.crt": tls.ca, "tls.crt": tls.cert, "tls.key": tls.key, CONFIG_NAME: config_yaml}
    temps: dict[str, str] = {}
    try:
        for name, text in contents.items():
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)  # mode 0600
            temps[name] = temp
            with os.fdopen(fd, "w") as f:
                f.write(text)
        _check_pair(temps["ca.crt"], temps["tls.crt"], temps["tls.key"])
        for name, temp in temps.items():
            os.replace(temp, folder / name)
    finally:
        for temp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    return folder


def _check_pair(ca: str, cert: str, key: str) -> None:
    """What the client will do with them (load the CA and the key pair), done now for a clear error."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=ca)
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise ClientConfigError(f"the Secret's certificate, key or CA does not load: {e}") from e


@dataclass(frozen=True)
class Options:
    namespace: str
    secret: str = SECRET
    context: str | None = None
    kubeconfig: str | None = None
    output_dir: str | None = None
    force: bool = False


def run(options: Options) -> Path:
    """Read the Secret, write the folder, print the export line (stdout) and the how-to (stderr)."""
    tls, context = read_secret(options.namespace, options.secret, options.kubeconfig, options.context)
    folder = (
        Path(options.output_dir).expanduser().absolute()
        if options.output_dir
        else default_folder(context, options.namespace)
    )
    write_files(folder, tls, dask_config_yaml(folder, options.namespace, context), options.force)
    quoted = shlex.quote(str(folder))
    print(f"export DASK_CONFIG={quoted}")
    how = [
        f"wrote {folder}/{{{','.join(KEYS)},{CONFIG_NAME}}} from Secret {options.namespace}/{options.secret}",
        f'  export DASK_CONFIG={quoted}   # or: eval "$(python -m dask_adaptive client-config ...)"',
        f"  kubectl -n {options.namespace} port-forward svc/dask-scheduler 8786:8786",
        "  python -c \"from distributed import Client; print(Client('tls://localhost:8786'))\"",
    ]
    previous = os.environ.get("DASK_CONFIG")
    if previous and Path(previous).expanduser().absolute() != folder:
        how.append(f"note: this replaces DASK_CONFIG={previous} in the shell you export it in")
    print("\n".join(how), file=sys.stderr)
    return folder


def add_parser(sub: Any) -> None:
    p = sub.add_parser("client-config", help="write the client certificate and dask config for a TLS stack")
    p.add_argument("--namespace", "-n", required=True, help="the stack's Dask namespace")
    p.add_argument("--secret", default=SECRET, help=f"Secret holding ca.crt/tls.crt/tls.key [{SECRET}]")
    p.add_argument("--context", default=None, help="kubeconfig context [the current one]")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig file [$KUBECONFIG or ~/.kube/config]")
    p.add_argument(
        "--output-dir", default=None, help="folder to write [~/.config/dask-adaptive/<context>/<namespace>]"
    )
    p.add_argument("--force", action="store_true", help="replace files in the folder not written by us")


def main(args: Any) -> int:
    try:
        run(Options(args.namespace, args.secret, args.context, args.kubeconfig, args.output_dir, args.force))
    except ClientConfigError as e:
        print(f"dask-adaptive client-config: {e}", file=sys.stderr)
        return 2
    return 0
