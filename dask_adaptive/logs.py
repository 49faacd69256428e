"""Logging shared by the scheduler and worker preloads: the handler setup and the key=value line format."""

from __future__ import annotations

import logging


def configure_logging() -> None:
    """Log like distributed does unless the user configured `dask_adaptive` logging themselves.

    The root logger sits at WARNING, so without this the decision lines (INFO) would be dropped.
    """
    ours = logging.getLogger("dask_adaptive")
    theirs = logging.getLogger("distributed")
    if ours.handlers or ours.level != logging.NOTSET or not theirs.handlers:
        return
    ours.setLevel(logging.INFO)
    for handler in theirs.handlers:
        ours.addHandler(handler)
    ours.propagate = False


def fmt(**fields: object) -> str:
    """One structured log line: key=value pairs, values with spaces quoted."""
    out = []
    for key, value in fields.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple | set) else str(value)
        out.append(f'{key}="{text}"' if " " in text or not text else f"{key}={text}")
    return " ".join(out)
