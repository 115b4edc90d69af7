"""Latitude/longitude → metres that are true distances, for radii given in metres.

Plain Web Mercator inflates distances by 1/cos(latitude) (25% at 37°N). A transverse Mercator projection
centred on the network keeps scale within ~1e-5 over tens of kilometres.
"""

from __future__ import annotations

import numpy as np
from pyproj import CRS, Transformer


def project_to_metres(latlon: np.ndarray) -> np.ndarray:
    """(lat, lon) degrees [N, 2] → (x east, y north) metres [N, 2] around the network's centre; NaN stays NaN."""
    latlon = np.asarray(latlon, dtype=np.float64)
    known = np.isfinite(latlon).all(1)
    xy = np.full(latlon.shape, np.nan)
    if not known.any():
        return xy
    lat0, lon0 = latlon[known].mean(0)
    local = CRS.from_proj4(f"+proj=tmerc +lat_0={lat0} +lon_0={lon0} +k=1 +x_0=0 +y_0=0 +ellps=WGS84 +units=m")
    transformer = Transformer.from_crs("EPSG:4326", local, always_xy=True)
    x, y = transformer.transform(latlon[known, 1], latlon[known, 0])
    xy[known] = np.stack([x, y], 1)
    return xy
