"""The road graph of a detector network (``core.graph.RoadGraph``) read from the field's standard files."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.data.csv_files import is_number, read_csv
from core.errors import DataError
from core.graph import RoadGraph

UNITS_M = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


def read_edges(path: str | Path, vd_ids: Sequence[str], unit: str = "m") -> tuple[RoadGraph, str]:
    """Links from a ``from,to,cost`` CSV (header optional; ``cost`` in ``unit``, optional column): by VD id when
    the ends name ids of the data (links naming other ids are cut: a graph of a larger network), else by index
    (an index out of range is an error; VDs whose ids are their indices, as PEMS04's, are read by index).
    Returns the graph and a note saying how many links were kept."""
    rows = [row for row in read_csv(path) if row]
    if rows and not is_number(rows[0][-1]) and rows[0][-1].strip() and len(rows[0]) >= 2:
        first, rows = 2, rows[1:]  # a header
    else:
        first = 1
    index = {vd: i for i, vd in enumerate(vd_ids)}
    ends = [(row[0].strip(), row[1].strip()) if len(row) >= 2 else ("", "") for row in rows]
    ids_are_indices = list(vd_ids) == [str(i) for i in range(len(vd_ids))]
    by_id = not ids_are_indices and any(a in index and b in index for a, b in ends)
    source, target, cost, cut = [], [], [], 0
    for line, (row, (a, b)) in enumerate(zip(rows, ends), start=first):
        if len(row) not in (2, 3):
            raise DataError(f"{path}: row {line}: expected from,to[,cost], got {','.join(row)!r}")
        if by_id:
            if a not in index or b not in index:
                cut += 1
                continue
            i, j = index[a], index[b]
        else:
            i, j = (_node_index(path, line, end, len(vd_ids)) for end in (a, b))
        value = row[2].strip() if len(row) == 3 else ""
        if value and not (is_number(value) and np.isfinite(float(value)) and float(value) >= 0):
            raise DataError(f"{path}: row {line}: cost {value!r} is not a finite number >= 0")
        if i == j:
            continue  # DCRNN's lists hold each sensor's distance to itself: not a link
        source.append(i)
        target.append(j)
        cost.append(float(value) * UNITS_M[unit] if value else np.nan)
    cost_array = np.array(cost, dtype=np.float64)
    has_cost = len(cost_array) and np.isfinite(cost_array).all()
    if len(cost_array) and not has_cost and np.isfinite(cost_array).any():
        row = int(np.argmax(~np.isfinite(cost_array)))
        raise DataError(f"{path}: link {source[row]}->{target[row]} has no cost while others have one")
    graph = RoadGraph(
        len(vd_ids), np.array(source, np.int64), np.array(target, np.int64), cost_array if has_cost else None
    )
    total = graph.num_links + cut
    note = f"{path}: kept {graph.num_links} of {total} links" + (
        f" ({cut} name ids that are not VDs of the data)" if cut else ""
    )
    if by_id and not graph.num_links:
        raise DataError(f"{path}: no link joins two VDs of the data")
    return graph, note


def read_adjacency(path: str | Path, vd_ids: Sequence[str]) -> tuple[RoadGraph, str]:
    """Links from DCRNN's ``adj_mx.pkl`` (``[sensor_ids, sensor_id_to_index, adj_mx]``, a Python 2 pickle):
    every non-zero off the diagonal is a link row → column with that weight; cut to the data's VDs by id."""
    try:
        with open(path, "rb") as f:
            content = _NumpyOnly(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not DCRNN's adjacency pickle: {error}") from None
    if not (isinstance(content, (list, tuple)) and len(content) == 3 and isinstance(content[1], dict)):
        raise DataError(
            f"{path}: expected DCRNN's layout [sensor_ids, sensor_id_to_index, adj_mx], got {type(content).__name__}"
            + (f" of {len(content)}" if isinstance(content, (list, tuple, dict)) else "")
        )
    ids, _, adjacency = content
    ids = [str(i) for i in ids]
    adjacency = np.asarray(adjacency, dtype=np.float64)
    if adjacency.shape != (len(ids), len(ids)):
        raise DataError(f"{path}: adj_mx has shape {adjacency.shape} for {len(ids)} sensor ids")
    if not np.isfinite(adjacency).all() or (adjacency < 0).any():
        row, column = np.argwhere(~(np.isfinite(adjacency) & (adjacency >= 0)))[0]
        raise DataError(f"{path}: adj_mx row {row}, column {column}: weight {adjacency[row, column]} is not >= 0")
    position = {vd: i for i, vd in enumerate(ids)}
    missing = [vd for vd in vd_ids if vd not in position]
    if missing:
        raise DataError(
            f"{path}: {len(missing)} VD(s) of the data are not among its {len(ids)} sensor ids, e.g. "
            f"{', '.join(missing[:5])}"
        )
    keep = np.array([position[vd] for vd in vd_ids])
    cut = adjacency[np.ix_(keep, keep)]
    np.fill_diagonal(cut, 0.0)
    source, target = np.nonzero(cut)
    total = int((adjacency > 0).sum() - (np.diag(adjacency) > 0).sum())
    graph = RoadGraph(len(vd_ids), source.astype(np.int64), target.astype(np.int64), weight=cut[source, target])
    return graph, f"{path}: kept {graph.num_links} of {total} links"


class _NumpyOnly(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numpy arrays only: a pickle that names any other class is refused
    (unpickling can run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not a numpy array part")
        return super().find_class(module, name)


def _node_index(path: str | Path, line: int, end: str, n: int) -> int:
    if not end.isdigit() or int(end) >= n:
        raise DataError(f"{path}: row {line}: node {end!r} is neither a VD id of the data nor an index 0..{n - 1}")
    return int(end)
