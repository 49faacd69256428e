"""`python -m dask_adaptive demo` (console script `dask-adaptive demo`); `config-doc` prints CONFIG.md;
`client-config --namespace NS` writes a laptop's client certificate and dask config (client_config.py);
`check-versions [ADDRESS]` compares this Python's dask packages with the cluster's (versions.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dask-adaptive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="scale local workers up and down under a real workload")
    demo.add_argument("--tasks", type=int, default=120, help="leaf tasks (plus a tree of additions) [120]")
    demo.add_argument("--sleep", type=float, default=1.0, help="seconds each leaf task sleeps [1.0]")
    demo.add_argument("--max-workers", type=int, default=8, help="most workers [8]")
    demo.add_argument("--scale-down-delay", default="10s", help="stabilization window [10s]")
    demo.add_argument("--interval", default="500ms", help="control loop period [500ms]")
    demo.add_argument("--output", default="dask-adaptive-demo.png", help="PNG plot path")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--plain", action="store_true", help="plain lines instead of the live view")
    sub.add_parser("config-doc", help="print the configuration reference (dask_adaptive/CONFIG.md)")
    check = sub.add_parser("check-versions", help="compare this Python's dask packages with the cluster's")
    check.add_argument(
        "address", nargs="?", default=None, help="scheduler address [dask's scheduler-address]"
    )
    from dask_adaptive import client_config  # stdlib at import; the kubernetes client only when run

    client_config.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "client-config":
        return client_config.main(args)
    if args.command == "check-versions":
        from dask_adaptive.versions import check_client

        code, report = check_client(args.address)
        print(report)
        return code
    if args.command == "config-doc":
        from dask_adaptive.config import config_markdown

        print(config_markdown(), end="")
        return 0
    if args.tasks < 1 or args.max_workers < 1 or args.sleep < 0:
        parser.error("--tasks and --max-workers must be >= 1, --sleep >= 0")

    from dask_adaptive.demo.run import DemoOptions, run

    return run(
        DemoOptions(
            leaves=args.tasks,
            seconds=args.sleep,
            max_workers=args.max_workers,
            scale_down_delay=args.scale_down_delay,
            interval=args.interval,
            output=args.output,
            timeout=args.timeout,
            live=False if args.plain else None,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
