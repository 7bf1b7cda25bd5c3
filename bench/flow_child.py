"""The process that runs one operator-level flow (``python -m bench.flow_child SPEC OUT``).

A process of its own, so that its peak resident memory (``ru_maxrss``) is the flow's alone: the
simulator, its moto server and the hosts live in the parent. Writes the flow's result (see
:func:`bench.flows.run_flow`) with this process's ``maxrss_kb`` and CPU seconds as JSON to OUT.

All the flow's boto3 clients share one botocore loader, so that hundreds of operators (each with
its own hook and client) do not each parse the EC2 service model again (~0.3 s of CPU each); a
real Airflow task pays that once in its own process. It changes no AWS call.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path


def share_botocore_loader() -> None:
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    botocore.session.create_loader = lambda *args, **kwargs: loader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flow_child", description=__doc__)
    parser.add_argument("spec", type=Path, help="the FlowSpec, JSON")
    parser.add_argument("out", type=Path, help="where to write the result, JSON")
    args = parser.parse_args(argv)

    share_botocore_loader()
    from bench.flows import FlowSpec, run_flow

    spec = FlowSpec(**json.loads(args.spec.read_text()))
    result = run_flow(spec)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["maxrss_kb"] = usage.ru_maxrss  # Linux: kilobytes
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
