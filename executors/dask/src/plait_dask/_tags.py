"""Op tags the Dask executor turns into ``client.submit`` arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PRIORITY_TAG = "plait/priority"
RESOURCES_TAG = "dask/resources"


def priority_of(tags: Mapping[str, Any]) -> int:
    """Dask ``priority`` (higher runs first), from the ``plait/priority`` tag."""
    return int(tags.get(PRIORITY_TAG, 0))


def resources_of(tags: Mapping[str, Any]) -> dict[str, float] | None:
    """Dask ``resources`` from the ``dask/resources`` tag, e.g. ``{"GPU": 1}`` (or its JSON,
    as a tag set from YAML or the CLI is a string)."""
    value = tags.get(RESOURCES_TAG)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ValueError(
            f"tag {RESOURCES_TAG!r} must map resource names to amounts, e.g. "
            f'{{"GPU": 1, "MEMORY": 8e9}}, got {tags.get(RESOURCES_TAG)!r}'
        )
    return dict(value)
