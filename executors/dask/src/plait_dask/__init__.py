"""plait-dask: run plait steps on a Dask cluster.

Select it with ``executor="dask"`` or ``execution: {dask: {address: tcp://host:8786}}`` in
run config. Importing this package does not import dask; starting the executor does.
"""

from plait_dask.config import DaskConfig
from plait_dask.executor import DaskExecutor

__all__ = ["DaskConfig", "DaskExecutor"]
