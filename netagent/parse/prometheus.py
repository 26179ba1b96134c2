"""Answers of the Prometheus HTTP API (``/api/v1/query``, ``/api/v1/query_range``).

The shape (https://prometheus.io/docs/prometheus/latest/querying/api/)::

    {"status": "success",
     "data": {"resultType": "vector",
              "result": [{"metric": {"instance": "node-1"}, "value": [1700000000.0, "1.5"]}]}}

A range query answers ``"matrix"`` with ``"values": [[t, "v"], ...]`` per series; an error
answers ``"status": "error"`` with ``errorType`` and ``error``. Sample values are strings
(``"NaN"`` and ``"+Inf"`` included): they are returned as floats, and the caller decides what
a non-finite value means. Anything else is a ``ParseError`` that says what was wrong, so a
proxy's HTML page or a truncated answer is reported, never guessed at.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netagent.errors import ParseError
from netagent.loaders import shorten

MAX_SERIES = 200_000  # a 5,000-node fleet answers ~10 series per node for one query


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (unix seconds, value), in time order


def vector(body: bytes) -> list[Sample]:
    """The samples of an instant query's answer."""
    result = _result(body, "vector")
    return [Sample(_labels(item, n), _point(item.get("value"), f"result[{n}].value")[1])
            for n, item in enumerate(result)]


def matrix(body: bytes) -> list[Series]:
    """The series of a range query's answer."""
    result = _result(body, "matrix")
    series = []
    for n, item in enumerate(result):
        values = item.get("values")
        if not isinstance(values, list):
            raise ParseError(f"result[{n}].values is not a list")
        points = tuple(_point(v, f"result[{n}].values[{k}]") for k, v in enumerate(values))
        if any(b[0] <= a[0] for a, b in itertools.pairwise(points)):
            raise ParseError(f"result[{n}].values are not in time order")
        series.append(Series(_labels(item, n), points))
    return series


def _result(body: bytes, want: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError included
        text = body[:80].decode("utf-8", "replace").strip()
        raise ParseError(f"not JSON ({_cut(text) or 'an empty answer'})") from err
    if not isinstance(doc, dict):
        raise ParseError("the answer is not a JSON object")
    if doc.get("status") == "error":
        kind, error = doc.get("errorType"), doc.get("error")
        raise ParseError(f"query failed: {_text(kind) or 'error'}: {_text(error)}")
    if doc.get("status") != "success":
        raise ParseError(f"status is {shorten(doc.get('status'))}, not 'success'")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise ParseError("data is not an object")
    if data.get("resultType") != want:
        raise ParseError(f"resultType is {shorten(data.get('resultType'))}, not {want!r}")
    result = data.get("result")
    if not isinstance(result, list):
        raise ParseError("data.result is not a list")
    if len(result) > MAX_SERIES:
        raise ParseError(f"{len(result)} series, more than {MAX_SERIES}")
    if not all(isinstance(item, dict) for item in result):
        raise ParseError("data.result holds something that is not an object")
    return result


def _labels(item: Mapping[str, Any], n: int) -> dict[str, str]:
    metric = item.get("metric", {})
    if not isinstance(metric, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise ParseError(f"result[{n}].metric is not a map of strings")
    return dict(metric)


def _point(value: Any, where: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)
            and isinstance(value[0], int | float) and not isinstance(value[0], bool)):
        raise ParseError(f"{where} is not [time, \"value\"]")
    try:
        number = float(value[1])
    except ValueError as err:
        raise ParseError(f"{where}: {shorten(value[1], 40)} is not a number") from err
    if not math.isfinite(value[0]):
        raise ParseError(f"{where}: time {value[0]} is not finite")
    return float(value[0]), number


def _text(value: Any) -> str:
    return _cut(value) if isinstance(value, str) else shorten(value)


def _cut(text: str, width: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."
