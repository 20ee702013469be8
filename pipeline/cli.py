"""The command line of `run_pipeline.py`: runners, datasets, configs, partial runs."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from components.trainer.request import KEEP_UNFINISHED_TRAININGS
from data import image_options
from pipeline import stages
from retinanet.evaluation.blessing import DEFAULT_THRESHOLDS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUTPUT_DIR = os.path.join(REPO_ROOT, "runs", "local")

EXAMPLES = """\
examples:
  # The main job: the built-in sample data, embedded defaults (sqlite MLMD, DirectRunner).
  python run_pipeline.py --runner=local

  # Re-evaluate the last model with soft-NMS, without retraining (partial run).
  python run_pipeline.py --runner=local --from_stage=evaluator --to_stage=evaluator \\
      --postprocess nms_mode=global_soft

  # Your own COCO-format data, fine-tuned from the latest blessed model of the main run.
  python run_pipeline.py --runner=local --dataset=custom --pipeline_name=my-finetune \\
      --train_annotations=ann/train.json --train_images=img/train \\
      --val_annotations=ann/val.json --val_images=img/val --finetune_from=latest

  # COCO 2017 with ResNet-50 on 8 GPUs (after python -m data.download_coco --output_dir ~/coco).
  python run_pipeline.py --runner=local --dataset=coco2017 --coco_dir=~/coco \\
      --config=coco/retinanet-r50-640-1x-b64-8gpu --strategy=mirrored

  # Compile for Vertex AI Pipelines (offline) and submit; data conversion on Dataflow.
  python run_pipeline.py --runner=vertex --vertex_image=us-docker.pkg.dev/P/R/retinanet-tfx \\
      --gcs_root=gs://BUCKET/retinanet --gcp_project=P --gcp_region=us-central1 --submit \\
      --dataflow --dataset=coco2017 --coco_dir=gs://BUCKET/coco

  # Lineage of the last pushed model.
  python -m pipeline.lineage --metadata runs/local/metadata.sqlite
"""


def _runner_flags(g) -> None:
  """The "runner" flags."""
  g.add_argument("--runner", choices=("local", "vertex"), default="local",
                 help="local: LocalDagRunner in this process with sqlite MLMD (default). "
                      "vertex: compile a Vertex AI PipelineSpec (and --submit it).")
  g.add_argument("--output_dir", default=DEFAULT_OUTPUT_DIR,
                 help="Local runs: root of pipeline artifacts, MLMD sqlite, sample data and "
                      "serving dir (default: %(default)s).")
  g.add_argument("--verbose", action="store_true",
                 help="Show everything the libraries print (TensorFlow's native logs, absl, Beam, "
                      "warnings) instead of the filtered console (retinanet/console.py).")
  g.add_argument("--pipeline_name", default="retinanet",
                 help="Pipeline name; MLMD contexts and caching are per name "
                      "(default: %(default)s). Use another name for a fine-tuning pipeline.")
  g.add_argument("--no_cache", action="store_true",
                 help="Disable TFX caching (on by default; the cache key includes a hash of "
                      "the project's code, so code changes never reuse stale artifacts).")
  g.add_argument("--from_stage", choices=stages.NAMES,
                 help="Partial run: start at this stage, taking upstream artifacts of the last "
                      "run from MLMD (e.g. --from_stage=evaluator re-evaluates the last model).")
  g.add_argument("--to_stage", choices=stages.NAMES,
                 help="Partial run: stop after this stage (e.g. --to_stage=data converts only).")


def _data_flags(g) -> None:
  """The "data" flags."""
  g.add_argument("--dataset", choices=("sample", "coco2017", "custom", "spans"),
                 default="sample",
                 help="sample: the built-in generated shapes dataset (default); coco2017: the "
                      "prepared COCO dir (--coco_dir); custom: your COCO-format files; spans: "
                      "the latest data drop of --span_pattern.")
  g.add_argument("--span_pattern",
                 help="spans: a directory pattern with {SPAN} (digits), e.g. "
                      "drops/span-{SPAN}, each with annotations/instances_{train,val}.json "
                      "and images/{train,val}/ (the sample dataset's layout).")
  g.add_argument("--span", type=int, default=None,
                 help="spans: take this span instead of the latest.")
  g.add_argument("--window", type=int, default=None,
                 help="spans: train on the last N validated spans (rolling window; each span "
                      "is converted once, by the run that first sees it). Default: 2; local "
                      "runs only (on Vertex each run takes the latest span).")
  g.add_argument("--continue_steps", type=int, default=0,
                 help="spans: once a model is blessed, warm-start each run from the latest "
                      "blessed model and train this many steps (the schedule scaled to "
                      "them); 0 = the config's train.total_steps.")
  g.add_argument("--accept_anomaly", action="append", default=[], metavar="KIND",
                 help="spans: accept this data-validation anomaly knowingly (repeatable): "
                      "unknown_category_id, image_size_out_of_range, box_size_out_of_range, "
                      "boxes_per_image_out_of_range, class_drift, box_size_drift. The schema "
                      "is updated and the decision recorded in MLMD.")
  g.add_argument("--max_class_regression", type=float, default=None,
                 help="spans: the drop of one class's AP on the held-out set that counts as "
                      "forgetting it and refuses the blessing (default 0.1).")
  g.add_argument("--max_held_out_regression", type=float, default=None,
                 help="spans: the AP drop on the first span's val split (the held-out set "
                      "that catches forgetting) that still blesses; default: "
                      "--max_ap_regression.")
  g.add_argument("--coco_dir", help="COCO 2017 root, e.g. ~/coco (with annotations/, "
                                    "train2017/, val2017/).")
  g.add_argument("--train_annotations", help="custom: COCO instances JSON of the train split.")
  g.add_argument("--train_images", help="custom: image folder of the train split.")
  g.add_argument("--val_annotations", help="custom: COCO instances JSON of the val split.")
  g.add_argument("--val_images", help="custom: image folder of the val split.")
  g.add_argument("--num_shards", type=int, default=0,
                 help="TFRecord shards per split; 0 = chosen from the data size.")
  g.add_argument("--size_mismatch", choices=image_options.SIZE_MISMATCH_POLICIES,
                 default=image_options.DEFAULT_SIZE_MISMATCH,
                 help="An image whose JSON height/width is not its size as displayed (EXIF "
                      "orientation applied): skip it (counted and named in the conversion "
                      "report), rescale (fit its boxes to the image), or error (stop, listing "
                      "the files). Default: %(default)s.")
  g.add_argument("--convert_unsupported_images", action="store_true",
                 help="Store WebP, TIFF, BMP and GIF images as PNG (EXIF orientation applied) "
                      "instead of skipping them as unsupported_format.")


def _training_flags(g) -> None:
  """The "model and training" flags."""
  g.add_argument("--config", default="sample/tiny",
                 help="A shipped config name (see --list_configs) or a JSON path "
                      "(default: %(default)s).")
  g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                 help="Override a config value, validated by the config tree; repeatable. "
                      "e.g. --set train.total_steps=200 --set model.backbone.depth=34")
  g.add_argument("--list_configs", action="store_true", help="List shipped configs and exit.")
  g.add_argument("--seed", type=int, default=0,
                 help="Seeds model initialization, input order and augmentation, and makes the "
                      "input pipeline deterministic, so a rerun on the same machine trains the "
                      "same model (default: %(default)s). -1 keeps the config's seeds and its "
                      "input.deterministic (faster input on many cores, not reproducible).")
  g.add_argument("--strategy", default="",
                 help="tf.distribute strategy: default, one_device, mirrored, "
                      "multi_worker_mirrored, tpu (default: the config's train.strategy).")
  g.add_argument("--finetune_from",
                 help="Fine-tune from a model: 'latest' (the latest pushed model recorded in "
                      "--base_metadata), a path to a Model artifact / pushed model dir, or "
                      "'modelgarden:CKPT', a TF Model Garden RetinaNet checkpoint prefix (imported "
                      "once; the model takes its architecture).")
  g.add_argument("--base_metadata",
                 default=os.path.join(DEFAULT_OUTPUT_DIR, "metadata.sqlite"),
                 help="MLMD sqlite searched by --finetune_from=latest (default: %(default)s).")
  g.add_argument("--keep_unfinished_trainings", type=int, default=KEEP_UNFINISHED_TRAININGS,
                 help="Workspaces of unfinished trainings (other configs or data) kept for a "
                      "later resume; older ones are deleted (default: %(default)s). A finished "
                      "training always deletes its own.")
  g.add_argument("--freeze", action="append", default=[], metavar="REGEX",
                 help="Freeze variables whose name matches REGEX; repeatable "
                      "(e.g. --freeze '^backbone/').")


def _serving_flags(g) -> None:
  """The "evaluation and push" flags."""
  g.add_argument("--min_ap", type=float, default=DEFAULT_THRESHOLDS.min_ap,
                 help="Bless only when COCO AP@[.5:.95] >= this (default: %(default)s).")
  g.add_argument("--max_ap_regression", type=float,
                 default=DEFAULT_THRESHOLDS.max_ap_regression,
                 help="Bless only when AP is not worse than the last blessed model's by more "
                      "than this (default: %(default)s).")
  g.add_argument("--postprocess", action="append", default=[], metavar="KEY=VALUE",
                 help="NMS settings for evaluation and export only (no retraining), e.g. "
                      "--postprocess nms_mode=per_class_soft --postprocess iou_threshold=0.6.")
  g.add_argument("--serving_dir",
                 help="Versioned serving dir of pushed models (default: <output_dir>/serving, "
                      "or <gcs_root>/serving on Vertex).")
  g.add_argument("--export_formats", default="",
                 help="Also push these formats beside the SavedModel, each checked against it: "
                      "comma-separated onnx, tflite, tflite_int8 (<version>/formats/).")


def _beam_flags(g) -> None:
  """The "Beam / Dataflow (data stage)" flags."""
  g.add_argument("--direct_mode", choices=("in_memory", "multi_processing"), default=None,
                 help="DirectRunner running mode (default: in_memory for small data, "
                      "multi_processing with a worker per core above 20 MB of annotation "
                      "JSON; see BENCHMARKS.md \"Data stage\").")
  g.add_argument("--dataflow", action="store_true",
                 help="Run the Beam data stage on Dataflow (needs --gcp_project, --gcp_region, "
                      "--gcs_root).")
  g.add_argument("--dataflow_machine_type", default="n1-standard-4",
                 help="Dataflow worker machine type (default: %(default)s).")
  g.add_argument("--dataflow_max_workers", type=int, default=16,
                 help="Dataflow max number of workers (default: %(default)s).")
  g.add_argument("--beam_arg", action="append", default=[], metavar="--FLAG=VALUE",
                 help="Extra Beam pipeline arg, repeatable (e.g. --beam_arg=--experiments=...).")


def _cloud_flags(g) -> None:
  """The "Google Cloud (Vertex AI / Dataflow)" flags."""
  g.add_argument("--gcp_project", help="GCP project.")
  g.add_argument("--gcp_region", default="us-central1", help="GCP region (default: %(default)s).")
  g.add_argument("--gcs_root", help="gs:// root for the pipeline root, temp files and serving.")
  g.add_argument("--vertex_image", default="gcr.io/YOUR_PROJECT/retinanet-tfx:latest",
                 help="Container image built from the Dockerfile (default: %(default)s).")
  g.add_argument("--vertex_spec", default=os.path.join(REPO_ROOT, "runs", "vertex",
                                                       "retinanet_pipeline.json"),
                 help="Where to write the compiled PipelineSpec (default: %(default)s).")
  g.add_argument("--submit", action="store_true", help="Submit the compiled spec to Vertex AI.")
  g.add_argument("--schedule", default="", metavar="CRON",
                 help="Also write a Vertex AI schedule of the compiled spec, e.g. "
                      "'TZ=UTC 0 6 * * 1' (weekly, with --dataset=spans: the latest span each "
                      "run), to <vertex_spec>.schedule.json; with --submit, create it instead "
                      "of one run.")
  g.add_argument("--dry_run", action="store_true",
                 help="Compile, then print the Dataflow args and (with --vertex_training) the "
                      "CustomJob request the Trainer would send; submit nothing.")
  g.add_argument("--service_account", default="",
                 help="Service account of the pipeline job, the training job and Dataflow workers.")
  g.add_argument("--network", default="",
                 help="VPC network (projects/NUMBER/global/networks/NAME) for the training job and "
                      "Dataflow.")
  g.add_argument("--subnetwork", default="",
                 help="Dataflow subnetwork (regions/REGION/subnetworks/NAME or a full URL).")


def _hardware_flags(g) -> None:
  """The "training hardware (Vertex AI)" flags."""
  g.add_argument("--vertex_training", action="store_true",
                 help="Run the Trainer's training as a Vertex AI CustomJob on the machines below "
                      "(multi-worker and TPU need it); otherwise the Trainer step itself requests "
                      "the accelerator.")
  g.add_argument("--train_machine_type", default="n1-standard-8",
                 help="Machine of each training worker (cloud-tpu for a TPU VM).")
  g.add_argument("--train_accelerator_type", default="",
                 help="NVIDIA_TESLA_V100, NVIDIA_TESLA_T4, NVIDIA_L4, NVIDIA_TESLA_A100, ... or "
                      "TPU_V2 / TPU_V3 (with --vertex_training --train_machine_type=cloud-tpu).")
  g.add_argument("--train_accelerator_count", type=int, default=0,
                 help="Accelerators per worker (GPUs: 1, 2, 4, 8, 16; TPU VM: 8).")
  g.add_argument("--train_workers", type=int, default=1,
                 help="Training machines, the chief included (>1: MultiWorkerMirroredStrategy; "
                      "needs --vertex_training).")
  g.add_argument("--tpu", default="",
                 help="TPU name or grpc:// address for --strategy=tpu outside Vertex (e.g. a "
                      "Cloud TPU node next to the Trainer), 'local' on a TPU VM.")
  g.add_argument("--tpu_zone", default="", help="Zone of --tpu.")


def build_parser() -> argparse.ArgumentParser:
  """Every flag of run_pipeline.py, in its groups."""
  p = argparse.ArgumentParser(
      prog="run_pipeline.py",
      description="Runs the RetinaNet TFX pipeline: data -> statistics -> trainer -> evaluator -> "
                  "pusher.",
      epilog=EXAMPLES,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  _runner_flags(p.add_argument_group("runner"))
  _data_flags(p.add_argument_group("data"))
  _training_flags(p.add_argument_group("model and training"))
  _serving_flags(p.add_argument_group("evaluation and push"))
  _beam_flags(p.add_argument_group("Beam / Dataflow (data stage)"))
  _cloud_flags(p.add_argument_group("Google Cloud (Vertex AI / Dataflow)"))
  _hardware_flags(p.add_argument_group("training hardware (Vertex AI)"))
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s] %(message)s",
                      datefmt="%H:%M:%S")
  if not args.verbose:
    for noisy in ("absl", "apache_beam", "tensorflow", "ml_metadata"):
      logging.getLogger(noisy).setLevel(logging.WARNING)
    from retinanet import console  # pylint: disable=g-import-not-at-top
    console.quiet_python_noise()
  from pipeline import run  # pylint: disable=g-import-not-at-top
  try:
    return run.run(args)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
