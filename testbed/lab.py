"""The multi-host suite's 3-host cluster as a lab, to try overlay networks by hand:

    python -m testbed.lab up      # 3 Docker hosts on OVN in namespaces; prints how to use them
    python -m testbed.lab down    # removes all of it (also what a killed run left)

The cluster is testbed/multihost.py's (namespaces ``ovsmh-*``, directory
/run/docker-ovs-plugin-mh): this machine's own Docker, Open vSwitch, links and iptables are never
touched. Its plugins serve the driver ``ovs`` (each in its own host), on the cluster's NB over
plain TCP (a lab). The test suite's cluster is the same one: running the multi-host tests
removes a lab that is up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from testbed.image import IMAGE_TAG
from testbed.multihost import Cluster, Layout, missing_tool, sweep

DRIVER = "ovs"


def up(layout: Layout) -> int:
    if (reason := missing_tool()) is not None:
        print(f"cannot bring the lab up: {reason}", file=sys.stderr)
        return 1
    args = ("--ovn-nb", layout.nb_remote, "--ovn-nb-insecure-tcp")
    cluster = Cluster(layout, driver=DRIVER, plugin_args=args)
    try:
        seconds = cluster.up()
    except BaseException:
        cluster.down()
        raise
    # The daemons run in sessions of their own: they stay when this process ends.
    print(f"3 Docker hosts up in {seconds:.1f} s (OVN NB and SB: 3-member Raft clusters).")
    for h in cluster.hosts:
        print(f"  {h.name}: docker -H {h.host.docker_host}   (netns {h.netns}, {h.ip})")
    print(f"  NB: ip netns exec {layout.netns(1)} ovn-nbctl --db={layout.nb_remote} show")
    print(f"  image on every host: {IMAGE_TAG}")
    print(f"  logs: {layout.base}/hN/*.log;  remove it all: python -m testbed.lab down")
    return 0


def down(layout: Layout) -> int:
    found = sweep(layout)
    print("removed: " + ("; ".join(found) if found else "nothing was there"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("up", "down"))
    args = parser.parse_args(argv)
    layout = Layout()
    return up(layout) if args.action == "up" else down(layout)


if __name__ == "__main__":
    sys.exit(main())
