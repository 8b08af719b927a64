"""A real single-node SLURM cluster on this host, for tests and for trying the SLURM path on one machine.

    python -m slurm.local start DIR     # prints `export SLURM_CONF=DIR/slurm.conf`
    python -m slurm.local stop DIR
"""

from slurm.local.cluster import LocalCluster, slurm_missing

__all__ = ["LocalCluster", "slurm_missing"]
