"""IAM documents linted with parliament (its community auditors included)."""

from __future__ import annotations

import json
import warnings

with warnings.catch_warnings():  # parliament's own regexes trip a DeprecationWarning at first import
    warnings.simplefilter("ignore", DeprecationWarning)
    from parliament import analyze_policy_string


def findings(doc: dict) -> list[tuple[str, object]]:
    policy = analyze_policy_string(json.dumps(doc), include_community_auditors=True)
    return sorted((f.issue, json.dumps(f.detail, sort_keys=True)) for f in policy.findings)
