"""Traffic data, after the recipe: the HDF5 schema, projection to metres, the synthetic network, importers, windows."""

from core.data.dataset import TrafficData
from core.data.hdf5 import describe_hdf5, read_hdf5, write_hdf5

__all__ = ["TrafficData", "describe_source", "load_source", "read_hdf5", "write_hdf5"]


def load_source(source: str, synthetic_seed: int = 0, store: str = "memory") -> TrafficData:
    """``"default"`` → the embedded synthetic network; anything else → an HDF5 file of the schema, its readings
    in memory or, with ``store = "disk"``, left on disk (``read_hdf5``)."""
    if source == "default":
        from core.data.synthetic import generate

        return generate(synthetic_seed)
    return read_hdf5(source, store)


def describe_source(source: str) -> set[str] | None:
    """What ``source`` offers besides readings (``"positions"``, ``"road_graph"``), from its metadata only; None
    when it is not a readable file."""
    if source == "default":
        return {"positions", "road_graph"}
    return describe_hdf5(source)
