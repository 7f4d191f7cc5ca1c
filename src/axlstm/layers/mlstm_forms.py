"""Which exact mLSTM form is fastest, per device, dtype, pass kind and sequence length.

``mlstm_backend="auto"`` asks :func:`choose_form`. The answer comes from a table of times
measured by ``axlstm benchmark --forms`` (one row per device type, dtype and pass kind: the
time of each form at a ladder of sequence lengths), never from a guess: for a length between
two measured ones the nearer one on a log scale decides, and of the forms measured there the
fastest that can run here wins (the Triton kernel only where it is installed and the tensors
are on CUDA or Triton's interpreter is on). Where no row matches (a device nobody has measured
yet), the rule of the CPU measurements applies: the parallel form up to
:data:`DEFAULT_PARALLEL_MAX_TOKENS` tokens, the chunkwise form above.

The table shipped with the package is ``mlstm_forms.json`` next to this file. A table measured
on another machine is used by pointing ``AXLSTM_MLSTM_FORMS`` at its JSON file (read when this
module is imported) or by :func:`set_form_table`; rows of the user's table replace the shipped
rows with the same (device, dtype, grad) key. The table is in memory before any model runs, so
the choice is plain Python on shapes that ``torch.compile`` traces without a graph break.

All forms compute the same function (see :mod:`axlstm.layers.mlstm`), so the choice changes
speed and memory, not results beyond rounding.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TABLE_FORMAT = 1
PACKAGED_TABLE = Path(__file__).with_name("mlstm_forms.json")
ENV_TABLE = "AXLSTM_MLSTM_FORMS"
DEFAULT_PARALLEL_MAX_TOKENS = 128
"""The parallel/chunkwise crossover of the CPU measurements, used where no row matches."""

TIMED_FORMS = ("parallel", "chunkwise", "triton")

Key = tuple[str, str, bool]  # (device type, dtype name, grad)
_rows: dict[Key, dict[str, Any]] | None = None


class FormTableError(ValueError):
    """A form table that cannot be used (names the file and the problem)."""


def dtype_name(dtype) -> str:
    """ "float32" for ``torch.float32`` and for "float32"."""
    return str(dtype).removeprefix("torch.")


def _check_row(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise FormTableError(f"{where}: a row must be an object, got {type(row).__name__}")
    for field in ("device", "dtype", "grad", "lengths", "times"):
        if field not in row:
            raise FormTableError(f"{where}: row without {field!r}")
    lengths = row["lengths"]
    if (
        not isinstance(lengths, list)
        or not lengths
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lengths)
        or sorted(set(lengths)) != lengths
    ):
        raise FormTableError(f"{where}: 'lengths' must be increasing positive integers")
    times = row["times"]
    if not isinstance(times, Mapping) or not times:
        raise FormTableError(f"{where}: 'times' must map form names to lists of seconds")
    for form, ts in times.items():
        if form not in TIMED_FORMS:
            raise FormTableError(f"{where}: unknown form {form!r}; forms are {TIMED_FORMS}")
        if not isinstance(ts, list) or len(ts) != len(lengths):
            raise FormTableError(f"{where}: times of {form!r} must be one per length")
        for t in ts:
            ok = t is None or (isinstance(t, (int, float)) and math.isfinite(t) and t > 0)
            if not ok:
                raise FormTableError(f"{where}: a time of {form!r} is {t!r}")
    if not isinstance(row["grad"], bool):
        raise FormTableError(f"{where}: 'grad' must be true or false")
    return dict(row)


def read_table(source: str | os.PathLike | Mapping[str, Any]) -> dict[Key, dict[str, Any]]:
    """Rows of a form table (a JSON file's path or its parsed object), checked, by key.

    Raises:
        FormTableError: unreadable file, wrong format, or a malformed row (naming it).
    """
    if isinstance(source, Mapping):
        data, where = source, "form table"
    else:
        where = str(source)
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as e:
            raise FormTableError(f"{where}: cannot read the mLSTM form table: {e}") from e
    if not isinstance(data, Mapping) or data.get("format") != TABLE_FORMAT:
        raise FormTableError(f"{where}: not an mLSTM form table of format {TABLE_FORMAT}")
    rows = {}
    for n, row in enumerate(data.get("rows") or []):
        row = _check_row(row, f"{where}, row {n}")
        rows[(str(row["device"]), dtype_name(row["dtype"]), row["grad"])] = row
    return rows


def _table() -> dict[Key, dict[str, Any]]:
    global _rows
    if _rows is None:
        rows = read_table(PACKAGED_TABLE)
        user = os.environ.get(ENV_TABLE)
        if user:
            rows.update(read_table(user))
            logger.info("mLSTM form table: %s over the packaged one", user)
        _rows = rows
    return _rows


def set_form_table(source: str | os.PathLike | Mapping[str, Any] | None) -> None:
    """Use this table's rows over the packaged ones (``None``: back to the packaged table and
    ``AXLSTM_MLSTM_FORMS``, both read again)."""
    global _rows
    _rows = None
    rows = _table()
    if source is not None:
        rows.update(read_table(source))


def table_rows() -> list[dict[str, Any]]:
    """The rows in use (for reports and docs)."""
    return list(_table().values())


def _nearest(lengths: list[int], tokens) -> int:
    """Index of the measured length nearest to ``tokens`` on a log scale.

    Written with comparisons against the geometric midpoints only, so that under
    ``torch.compile`` a symbolic length gives a guard per crossing, not a specialisation.
    """
    i = 0
    while i + 1 < len(lengths) and tokens * tokens > lengths[i] * lengths[i + 1]:
        i += 1
    return i


def choose_form(
    device_type: str,
    dtype,
    tokens,
    grad: bool,
    available: Iterable[str] = ("parallel", "chunkwise"),
) -> str:
    """The fastest exact form for this device, dtype, pass kind and length.

    Args:
        device_type: "cpu", "cuda", ...
        dtype: the q/k/v dtype (``torch.float32`` or its name).
        tokens: sequence length S.
        grad: whether a backward pass will follow (training) or not (inference).
        available: forms that can run here; the table's winners among them are considered.

    Returns:
        "parallel", "chunkwise" or "triton".
    """
    available = tuple(available)
    row = _table().get((device_type, dtype_name(dtype), bool(grad)))
    if row is not None:
        i = _nearest(row["lengths"], tokens)
        beyond = tokens > row["lengths"][-1]
        best, best_t = None, math.inf
        for form, ts in row["times"].items():
            t = ts[i]
            # never extrapolate the quadratic form past the lengths it was measured at
            if form not in available or t is None or (beyond and form == "parallel"):
                continue
            if t < best_t:
                best, best_t = form, t
        if best is not None:
            return best
    if "parallel" in available and tokens <= DEFAULT_PARALLEL_MAX_TOKENS:
        return "parallel"
    return "chunkwise"


def derive_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Form-table rows from ``axlstm benchmark --forms`` measurements.

    Each result has device, dtype, grad, tokens, form and time_s (None when the form failed,
    e.g. ran out of memory); rows come out keyed by (device type, dtype, grad).
    """
    grouped: dict[Key, dict[int, dict[str, float | None]]] = {}
    for r in results:
        key = (str(r["device"]).split(":")[0], dtype_name(r["dtype"]), bool(r["grad"]))
        grouped.setdefault(key, {}).setdefault(int(r["tokens"]), {})[r["form"]] = r["time_s"]
    rows = []
    for (device, dtype, grad), by_len in sorted(grouped.items()):
        lengths = sorted(by_len)
        forms = sorted({f for d in by_len.values() for f in d}, key=TIMED_FORMS.index)
        times = {f: [by_len[n].get(f) for n in lengths] for f in forms}
        rows.append(
            {"device": device, "dtype": dtype, "grad": grad, "lengths": lengths, "times": times}
        )
    return rows


def crossovers(row: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(length, winning form) at each measured length of a row, for tables in the docs."""
    out = []
    for i, n in enumerate(row["lengths"]):
        ts = {f: t[i] for f, t in row["times"].items() if t[i] is not None}
        out.append((n, min(ts, key=ts.get) if ts else "-"))
    return out


_table()  # read now, not inside a torch.compile trace
