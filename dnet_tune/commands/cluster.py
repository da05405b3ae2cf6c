"""`dnet-tune cluster check`: the offline checks of cluster-launcher and KubeRay files."""

from __future__ import annotations

import argparse

HELP = "Ray cluster configs"


def add_arguments(c: argparse.ArgumentParser) -> None:
    csub = c.add_subparsers(dest="cluster_command", required=True, parser_class=type(c))
    chk = csub.add_parser("check", help="validate cluster-launcher / KubeRay files offline")
    chk.add_argument("files", nargs="+", help="launcher YAMLs, KubeRay manifests or folders")


def run(args: argparse.Namespace) -> int:
    from dnet_tune.ops.cluster_files import main_check

    return main_check(args.files)
