"""Workload suites: real layer shapes of published networks, one JSON file per suite
(README.md in this folder describes the format).

They ship inside the package and are read through :mod:`importlib.resources`, so the
benchmark, the tests and the tools find them from a source tree, an installed wheel or a
zip alike.

    >>> "resnet50" in suite_names()
    True
    >>> layers("pooling")[0]["op"]
    'max_pool2d'
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources


def _folder():
    return resources.files(__name__)


def suite_names() -> list[str]:
    """Every suite, sorted."""
    return sorted(f.name[: -len(".json")] for f in _folder().iterdir() if f.name.endswith(".json"))


@cache
def _load(suite: str) -> dict:
    names = suite_names()
    if suite not in names:
        raise ValueError(f"unknown suite {suite!r}; the suites are: {', '.join(names)}")
    return json.loads(_folder().joinpath(f"{suite}.json").read_text())


def document(suite: str) -> dict:
    """One suite's JSON document (``about``, ``layers``): a fresh copy the caller may change."""
    return json.loads(json.dumps(_load(suite)))


def layers(suite: str) -> list[dict]:
    """The layers of one suite, in file order (fresh dicts)."""
    return document(suite)["layers"]


def about(suite: str) -> str:
    return _load(suite).get("about", "")
