"""Beam pipeline args of the data stages: the DirectRunner here, Dataflow at scale."""
from __future__ import annotations

import argparse
import os
from typing import List, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def beam_args(args: argparse.Namespace, annotation_files: Sequence[str] = ()) -> List[str]:
  """Beam pipeline args: DirectRunner locally (its mode by the annotation files' size when
  --direct_mode is not given), Dataflow with --dataflow.

  Dataflow launched from Vertex (--runner=vertex) runs its workers in the pipeline's
  own image (`sdk_container_image`, Runner v2): the code is already there, so no
  setup_file and no path of the compiling machine enters the spec. Launched from
  this machine, the repository is shipped with its setup.py.
  """
  from data import convert  # pylint: disable=g-import-not-at-top
  if args.dataflow:
    missing = [f for f, v in (("--gcp_project", args.gcp_project), ("--gcs_root", args.gcs_root))
               if not v]
    if missing:
      raise SystemExit(f"error: --dataflow needs {', '.join(missing)}")
    result = [
        "--runner=DataflowRunner",
        f"--project={args.gcp_project}",
        f"--region={args.gcp_region}",
        f"--temp_location={args.gcs_root}/tmp",
        f"--staging_location={args.gcs_root}/staging",
        f"--machine_type={args.dataflow_machine_type}",
        f"--max_num_workers={args.dataflow_max_workers}",
    ]
    if args.runner == "vertex":
      result += [f"--sdk_container_image={args.vertex_image}", "--experiments=use_runner_v2"]
    else:
      result.append(f"--setup_file={os.path.join(REPO_ROOT, 'setup.py')}")
    if args.service_account:
      result.append(f"--service_account_email={args.service_account}")
    if args.network:
      result.append(f"--network={args.network.rsplit('/', 1)[-1]}")
    if args.subnetwork:
      result.append(f"--subnetwork={args.subnetwork}")
  else:
    mode = [f"--direct_running_mode={args.direct_mode}"]
    if args.direct_mode == "multi_processing":
      mode.append("--direct_num_workers=0")  # a worker process per core
    result = convert.pipeline_args_with_defaults(
        mode if args.direct_mode else [], convert.annotation_bytes(annotation_files))
    # Naming an SDK image stops TFX from building an ephemeral sdist of itself
    # for every Beam run (~1.5 s, ~49 MB under /tmp); the DirectRunner never uses it.
    result.append("--sdk_container_image=unused-by-direct-runner")
  return result + list(args.beam_arg)
