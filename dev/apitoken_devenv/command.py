"""`apitoken-operator dev cluster --dir DIR`: the local control plane in the foreground.

Writes `DIR/kubeconfig` once the API server is ready and runs until SIGINT or SIGTERM, then stops
every component it started. The ApiToken CRD is installed first (before the garbage collector starts).
"""

from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import threading
from types import FrameType

from apitoken_devenv import controlplane
from apitoken_devenv.paths import default_crd_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", required=True, type=pathlib.Path, help="folder for kubeconfig, data and logs"
    )
    parser.add_argument(
        "--crd",
        action="append",
        type=pathlib.Path,
        default=None,
        help="CRD file to install before the controller manager starts (default: the ApiToken CRD)",
    )


def main(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    crd_files = args.crd if args.crd is not None else default_crd_files()
    crds = controlplane.load_yaml_documents(crd_files)
    try:
        with controlplane.running_control_plane(workdir=args.dir.resolve(), crds=crds) as plane:
            print(f"kubeconfig: {plane.kubeconfig}", flush=True)
            print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
            while not stop.wait(0.5):
                dead = [c.name for c in plane.components if not c.alive()]
                if dead:
                    print(f"{', '.join(dead)} exited; stopping (logs in {args.dir})", file=sys.stderr)
                    return 1
    except controlplane.ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        plane_kubeconfig = args.dir / "kubeconfig"
        plane_kubeconfig.unlink(missing_ok=True)  # a stale kubeconfig would point at a dead server
    print("control plane stopped", file=sys.stderr)
    return 0
