"""The notebook's init container: fill the token Secret once, then hand the token to the lab as a file.

Shipped in the notebook's ConfigMap and run by the image's own Python (`python jupyter_token.py ...`), so
it uses the standard library only: no Kubernetes client, no dask_adaptive. Why this way: the token must
not be in Pulumi state, so the program creates the Secret with no data (and ignores changes to it), and
this script, holding a short-lived ServiceAccount token mounted in the init container only, whose Role
allows get and patch on exactly that Secret, makes one with `secrets.token_urlsafe(32)` only if it is
still empty. The patch carries the Secret's resourceVersion: a concurrent writer makes it fail with 409
and the script reads again (so two pods can never end up with two tokens). The token is written for the
lab with mode 0400 and no trailing newline (jupyter_server reads `JUPYTER_TOKEN_FILE` as is).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ATTEMPTS = 5


class Conflict(Exception):
    """The Secret changed between the read and the patch (HTTP 409)."""


Get = Callable[[], dict]
Patch = Callable[[dict], dict]


def ensure_token(get: Get, patch: Patch, key: str) -> str:
    """The token in the Secret's `key`, created first if the Secret has none (pure but for the calls)."""
    for _ in range(ATTEMPTS):
        secret = get()
        data = secret.get("data") or {}
        if data.get(key):
            return base64.b64decode(data[key]).decode()
        token = secrets.token_urlsafe(32)
        body = {
            "metadata": {"resourceVersion": secret["metadata"]["resourceVersion"]},
            "data": {key: base64.b64encode(token.encode()).decode()},
        }
        try:
            patch(body)
        except Conflict:
            continue
        return token
    raise RuntimeError(f"the Secret kept changing under {ATTEMPTS} attempts to fill it")


def write_private(path: Path, token: str) -> None:
    """Write `token` readable by its owner only (0400), replacing any earlier file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    os.replace(tmp, path)


def _api(base: str, account_dir: Path, path: str) -> tuple[Get, Patch]:
    """GET and merge-PATCH of one object, with the mounted token and the cluster CA."""
    context = ssl.create_default_context(cafile=str(account_dir / "ca.crt"))

    def call(method: str, body: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {(account_dir / 'token').read_text().strip()}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
            data = json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                raise Conflict from exc
            raise

    return (lambda: call("GET")), (lambda body: call("PATCH", body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True, help="the token Secret's name (this namespace)")
    parser.add_argument("--key", required=True, help="its data key")
    parser.add_argument("--out", required=True, type=Path, help="where the lab reads the token")
    parser.add_argument("--service-account-dir", type=Path, default=Path(SERVICE_ACCOUNT_DIR))
    parser.add_argument("--api", default=None, help="API server URL (default: the in-cluster one)")
    args = parser.parse_args(argv)
    account = args.service_account_dir
    namespace = (account / "namespace").read_text().strip()
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    host = f"[{host}]" if ":" in host else host  # an IPv6 Service address
    base = args.api or f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
    get, patch = _api(base, account, f"/api/v1/namespaces/{namespace}/secrets/{args.secret}")
    write_private(args.out, ensure_token(get, patch, args.key))
    print(f"token ready in {args.out}", file=sys.stderr)  # never the token itself
    return 0


if __name__ == "__main__":
    sys.exit(main())
