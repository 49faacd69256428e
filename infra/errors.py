"""The two errors that stop a run before anything is created: bad config, and a blocking live state."""

from __future__ import annotations

from typing import Any

import pulumi


class ConfigError(pulumi.RunError):
    """Bad stack config, raised before any resource is registered.

    A `pulumi.RunError` so the CLI prints the message without a Python traceback. The message always
    names the full key (e.g. `adaptive-dask:workerGroups[1].maxSize`), the bad value and what is allowed.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: got {value!r}; {allowed}")


class LiveStateError(pulumi.RunError):
    """Something in the live account blocks this deployment; raised before any AWS resource is registered.

    The message says what was found, why it blocks, and the exact command that clears it.
    """

    def __init__(self, found: str, why: str, fix: str) -> None:
        self.found, self.why, self.fix = found, why, fix
        super().__init__(f"{found}: {why}. Fix: {fix}")
