"""python -m slurm.local start|stop|status DIR: a single-node SLURM cluster on this host (slurm/local/cluster.py)."""

import argparse
import sys

from aira.errors import run_cli
from slurm.local.cluster import LocalCluster, install_if_missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slurm.local", description=__doc__)
    p.add_argument("verb", choices=["start", "stop", "status"])
    p.add_argument("dir", help="the cluster's directory (config, state, logs); created by start")
    p.add_argument("--install", action="store_true", help="apt-get install slurm-wlm and munge when missing (root)")
    args = p.parse_args(argv)
    cluster = LocalCluster(args.dir)
    if args.verb == "start":
        if args.install and (why := install_if_missing()):
            print(f"python -m slurm.local: {why}", file=sys.stderr)
            return 2
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    elif args.verb == "stop":
        cluster.stop()
    else:
        print("running" if cluster.running() else "stopped")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m slurm.local", main))
