"""What `run_pipeline.py` does once flags are parsed: resolve, build, run, summarize."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

from pipeline import datasets, stages

logger = logging.getLogger("run_pipeline")


def parse_key_values(items: Sequence[str], flag: str) -> dict:
  """{KEY: value} of repeated KEY=VALUE flags (values parsed as JSON when they are)."""
  result = {}
  for item in items:
    if "=" not in item:
      raise SystemExit(f"error: {flag} {item!r} is not KEY=VALUE")
    key, raw = item.split("=", 1)
    try:
      result[key] = json.loads(raw)
    except json.JSONDecodeError:
      result[key] = raw
  return result


def seed_overrides(seed: int) -> List[str]:
  """Config overrides that make a run reproducible on one machine: the same model
  initialization (train.seed) and the same input order and augmentation
  (input.seed, input.deterministic). A negative seed keeps the config's own."""
  if seed < 0:
    return []
  return [f"train.seed={seed}", f"input.seed={seed}", "input.deterministic=true"]


def load_experiment_config(args: argparse.Namespace):
  """The named config, then --seed, then --set overrides (which win), validated. Needs no
  TensorFlow: a mistake in --config or --set is reported in about a second."""
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  from retinanet import configs  # pylint: disable=g-import-not-at-top
  config = configs.load_named_config(args.config)
  overrides = seed_overrides(args.seed) + list(args.overrides)
  if overrides:
    config = config_lib.apply_overrides(config, overrides)
  config_lib.validate(config)
  return config


@dataclasses.dataclass(frozen=True)
class Paths:
  """Where a run keeps things: local directories, or gs:// for Vertex."""
  local: bool
  pipeline_root: str
  serving_dir: str
  data_root: str
  metadata_path: Optional[str] = None
  output_dir: str = ""


def resolve_paths(args: argparse.Namespace) -> Paths:
  if args.runner == "local":
    output_dir = os.path.abspath(os.path.expanduser(args.output_dir))
    os.makedirs(output_dir, exist_ok=True)
    return Paths(local=True, pipeline_root=os.path.join(output_dir, "pipeline_root"),
                 serving_dir=args.serving_dir or os.path.join(output_dir, "serving",
                                                              args.pipeline_name),
                 data_root=output_dir, metadata_path=os.path.join(output_dir, "metadata.sqlite"),
                 output_dir=output_dir)
  if not args.gcs_root:
    raise ValueError("--runner=vertex needs --gcs_root=gs://BUCKET/PATH")
  return Paths(local=False, pipeline_root=f"{args.gcs_root}/pipeline_root",
               serving_dir=args.serving_dir or f"{args.gcs_root}/serving/{args.pipeline_name}",
               data_root=args.gcs_root)


def resolve_dataset(args: argparse.Namespace, data_root: str):
  """The dataset paths; local runs check that they exist, Vertex compiles offline."""
  local = args.runner == "local"
  if args.dataset == datasets.SAMPLE:
    if not local:
      raise ValueError("--runner=vertex needs data on gs://: use --dataset=custom with gs:// "
                       "paths or --dataset=coco2017 --coco_dir=gs://...")
    paths = datasets.sample_dataset(os.path.join(data_root, "sample_data"))
  elif args.dataset == datasets.SPANS:
    if not args.span_pattern:
      raise ValueError("--dataset=spans needs --span_pattern")
    if local:
      paths = datasets.span_dataset(os.path.expanduser(args.span_pattern), args.span)
    elif args.span is not None:
      raise ValueError("--runner=vertex takes the latest span when each run starts: no --span")
    else:
      paths = datasets.runtime_span_dataset(args.span_pattern)
  elif args.dataset == datasets.COCO2017:
    if not args.coco_dir:
      raise ValueError("--dataset=coco2017 needs --coco_dir")
    paths = datasets.coco2017_dataset(os.path.expanduser(args.coco_dir), check_exists=local)
  else:
    paths = datasets.custom_dataset(args.train_annotations, args.train_images,
                                    args.val_annotations, args.val_images, check_exists=local)
  return dataclasses.replace(paths, num_shards=args.num_shards, size_mismatch=args.size_mismatch,
                             convert_unsupported_images=args.convert_unsupported_images)


def match_num_classes(config, train_annotations: str, explicit: bool):
  """Sets model.num_classes from the train split's categories (the label map's size).

  A user's own dataset then needs no --set model.num_classes; an explicit value
  that disagrees with the data fails here, before any conversion or training.
  """
  from retinanet import coco  # pylint: disable=g-import-not-at-top
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  # Streams the categories only: a COCO-size file is never loaded here.
  label_map = coco.LabelMap.from_categories(coco.read_categories(train_annotations),
                                            train_annotations)
  if config.model.num_classes == label_map.num_classes:
    return config
  if explicit:
    config_lib.check_num_classes(config, label_map.num_classes)
  logger.info("model.num_classes=%d from the %d categories of %s", label_map.num_classes,
              label_map.num_classes, train_annotations)
  return config_lib.apply_overrides(config, [f"model.num_classes={label_map.num_classes}"])


def import_modelgarden_base(checkpoint: str, config, output_dir: str):
  """(model dir, config): a Model Garden RetinaNet checkpoint imported as a model dir of ours
  under `output_dir/imported_models/` (once per checkpoint and input size), and `config`
  with the checkpoint's architecture (its data's class count and input size kept)."""
  import hashlib  # pylint: disable=g-import-not-at-top
  from retinanet import layout  # pylint: disable=g-import-not-at-top
  from retinanet.modeling import modelgarden_import  # pylint: disable=g-import-not-at-top
  input_size = tuple(config.model.input_size)
  model_config = modelgarden_import.infer_model_config(checkpoint, input_size, base=config.model)
  model_config = dataclasses.replace(model_config, num_classes=config.model.num_classes)
  key = hashlib.sha256(f"{os.path.abspath(checkpoint)}|{input_size}".encode()).hexdigest()[:12]
  model_dir = os.path.join(output_dir, "imported_models", f"modelgarden-{key}")
  if not os.path.exists(os.path.join(model_dir, layout.CONFIG_FILE)):
    modelgarden_import.import_checkpoint(checkpoint, model_dir, input_size=input_size)
  logger.info("Fine-tuning from the Model Garden checkpoint %s (imported into %s): the model "
              "takes its architecture (ResNet-%d, padding same, FPN %d, heads %d x %d)",
              checkpoint, model_dir, model_config.backbone.depth, model_config.fpn.num_channels,
              model_config.head.num_convs, model_config.head.num_channels)
  return model_dir, dataclasses.replace(config, model=model_config)


def resolve_base_model(args: argparse.Namespace) -> Optional[str]:
  """The model dir to fine-tune from: the latest pushed model in MLMD, or a path."""
  if not args.finetune_from:
    return None
  if args.finetune_from != "latest":
    if not os.path.exists(args.finetune_from) and not args.finetune_from.startswith("gs://"):
      raise FileNotFoundError(f"--finetune_from={args.finetune_from} does not exist")
    return args.finetune_from
  from pipeline import metadata_queries  # pylint: disable=g-import-not-at-top
  from retinanet import layout  # pylint: disable=g-import-not-at-top
  if not os.path.exists(args.base_metadata):
    raise FileNotFoundError(f"--finetune_from=latest: no MLMD store at {args.base_metadata}; "
                            "run the main pipeline first or pass a model path")
  store = metadata_queries.open_store(args.base_metadata)
  pushed = metadata_queries.latest_pushed_model(store)
  if pushed is None:
    raise ValueError(f"--finetune_from=latest: no pushed model recorded in {args.base_metadata}")
  destination = metadata_queries.custom_properties(pushed)[layout.PushKeys.DESTINATION]
  logger.info("Fine-tuning from the latest pushed model %s (MLMD artifact %d)", destination,
              pushed.id)
  return str(destination)


def resolve_base_model_and_config(args: argparse.Namespace, config, paths: Paths):
  """(base model dir or None, config): a Model Garden import takes the checkpoint's
  architecture; any other base model keeps the config."""
  from retinanet.config import MODELGARDEN_SCHEME  # pylint: disable=g-import-not-at-top
  if (args.finetune_from or "").startswith(MODELGARDEN_SCHEME):
    if not paths.local:
      raise ValueError("--finetune_from=modelgarden:... imports the checkpoint locally: run the "
                       "import with --runner=local first and pass the imported model dir")
    return import_modelgarden_base(args.finetune_from[len(MODELGARDEN_SCHEME):], config,
                                   paths.output_dir)
  return resolve_base_model(args), config


def _training_hardware(args: argparse.Namespace, local: bool):
  """(VertexJobSpec or None, Trainer step ResourceSpec or None, strategy name) from the flags."""
  asked = (args.vertex_training or args.train_accelerator_type or args.train_workers > 1)
  if local:
    if asked:
      raise ValueError("--vertex_training / --train_accelerator_* / --train_workers describe "
                       "Vertex AI machines: use them with --runner=vertex")
    return None, None, args.strategy
  from pipeline import vertex_runner  # pylint: disable=g-import-not-at-top
  if args.vertex_training:
    from components.trainer import vertex_job  # pylint: disable=g-import-not-at-top
    if not args.gcp_project:
      raise ValueError("--vertex_training needs --gcp_project")
    spec = vertex_job.VertexJobSpec(
        project=args.gcp_project, region=args.gcp_region, image=args.vertex_image,
        machine_type=args.train_machine_type, accelerator_type=args.train_accelerator_type,
        accelerator_count=args.train_accelerator_count, worker_count=args.train_workers,
        service_account=args.service_account, network=args.network)
    return spec, None, spec.strategy
  if args.train_workers > 1:
    raise ValueError("--train_workers > 1 needs --vertex_training (a CustomJob has worker pools; "
                     "a pipeline step is one machine)")
  resources = (vertex_runner.trainer_resources(args.train_accelerator_type,
                                               args.train_accelerator_count)
               if args.train_accelerator_type else None)
  strategy = args.strategy or ("mirrored" if args.train_accelerator_count > 1 else "")
  return None, resources, strategy


def _check_postprocess_overrides(config, overrides: dict) -> None:
  from retinanet import config as config_lib  # pylint: disable=g-import-not-at-top
  config_lib.apply_overrides(config, [f"postprocess.{k}={v}" for k, v in overrides.items()])


def serving_from_flags(args: argparse.Namespace, config, paths: Paths):
  """The pipeline's Serving group; refuses post-processing that a format cannot export."""
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from retinanet.evaluation.blessing import BlessingThresholds  # pylint: disable=g-import-not-at-top
  from retinanet.serving import portable  # pylint: disable=g-import-not-at-top
  postprocess = parse_key_values(args.postprocess, "--postprocess")
  _check_postprocess_overrides(config, postprocess)
  export_formats = portable.parse_formats(args.export_formats)
  if portable.ONNX in export_formats:
    portable.check_onnx_nms_mode(postprocess.get("nms_mode", config.postprocess.nms_mode))
  return pipeline_lib.Serving(
      serving_dir=paths.serving_dir,
      thresholds=BlessingThresholds(args.min_ap, args.max_ap_regression),
      postprocess_overrides=postprocess, export_formats=tuple(export_formats))


def training_from_flags(args: argparse.Namespace, base_model_uri: Optional[str], local: bool):
  """(the pipeline's Training group, the VertexJobSpec or None)."""
  from components.trainer.request import TrainerRequest  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  training_job, resources, strategy = _training_hardware(args, local)
  request = TrainerRequest(
      strategy=strategy, tpu=args.tpu, tpu_zone=args.tpu_zone, gcp_project=args.gcp_project or "",
      freeze_patterns=tuple(args.freeze),
      keep_unfinished_trainings=args.keep_unfinished_trainings,
      vertex_job=training_job.to_json() if training_job else "")
  return pipeline_lib.Training(request=request, base_model_uri=base_model_uri,
                               resources=resources), training_job


def build_pipeline(args: argparse.Namespace, paths: Paths, config, continuous=None):
  """(the TFX pipeline the flags describe, the VertexJobSpec or None); `config` is
  load_experiment_config's, `continuous` continuous_from_flags'."""
  from pipeline import beam_options  # pylint: disable=g-import-not-at-top
  from pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  from pipeline.code_version import component_code_versions  # pylint: disable=g-import-not-at-top
  serving = serving_from_flags(args, config, paths)
  dataset = resolve_dataset(args, paths.data_root)
  if paths.local:
    config = match_num_classes(config, dataset.train_annotations,
                               explicit=any(o.startswith("model.num_classes=")
                                            for o in args.overrides))
  base_model_uri, config = resolve_base_model_and_config(args, config, paths)
  training, training_job = training_from_flags(args, base_model_uri, paths.local)
  annotation_files = [dataset.train_annotations, dataset.val_annotations] if paths.local else []
  orchestration = pipeline_lib.Orchestration(
      beam_pipeline_args=tuple(beam_options.beam_args(args, annotation_files)),
      enable_cache=not args.no_cache, code_versions=component_code_versions(),
      metadata_connection_config=(local_runner.metadata_config(paths.metadata_path)
                                  if paths.local else None),
      tfx_strategies_only=not paths.local)
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=args.pipeline_name, pipeline_root=paths.pipeline_root, dataset=dataset,
      config=config, serving=serving, training=training, orchestration=orchestration,
      continuous=pipeline_lib.Continuous(**continuous) if continuous else None)
  return pipeline, training_job


def continuous_from_flags(args: argparse.Namespace):
  """The keyword arguments of the pipeline's Continuous group for --dataset=spans (None
  otherwise), checked without TensorFlow; build_pipeline makes the group."""
  from data import validation  # pylint: disable=g-import-not-at-top
  if args.dataset != datasets.SPANS:
    return None
  vertex = args.runner != "local"
  local_only = (args.window, args.max_held_out_regression, args.max_class_regression)
  if vertex and any(flag is not None for flag in local_only):
    raise ValueError("--runner=vertex trains each run on the latest span (Vertex compiles only "
                     "TFX's own resolvers): --window, --max_held_out_regression and "
                     "--max_class_regression are local")
  if (args.window is not None and args.window < 1) or args.continue_steps < 0:
    raise ValueError("--window must be >= 1 and --continue_steps >= 0")
  regression = (args.max_ap_regression if args.max_held_out_regression is None
                else args.max_held_out_regression)
  given = {"window": args.window, "max_class_regression": args.max_class_regression}
  # Flags left out take Continuous's defaults (one definition, in pipeline/pipeline.py).
  return dict(continue_steps=args.continue_steps,
              accept_anomalies=tuple(validation.check_accept_list(args.accept_anomaly)),
              max_held_out_regression=regression,
              **{key: value for key, value in given.items() if value is not None})


def schedule_path_of(spec_path: str) -> str:
  """Where --schedule writes the schedule request: beside the spec."""
  return os.path.splitext(spec_path)[0] + ".schedule.json"


def compile_for_vertex(args: argparse.Namespace, pipeline, training_job, paths: Paths) -> int:
  """Compiles the Vertex spec; with --dry_run prints what would be launched, with --submit
  submits it."""
  from pipeline import vertex_runner  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(args.vertex_spec)), exist_ok=True)
  vertex_runner.compile_pipeline(pipeline, image=args.vertex_image, output_path=args.vertex_spec)
  print(f"Vertex pipeline spec: {args.vertex_spec}")
  schedule = None
  if args.schedule:
    schedule = vertex_runner.schedule_request(
        args.vertex_spec, cron=args.schedule, display_name=args.pipeline_name,
        pipeline_root=paths.pipeline_root, service_account=args.service_account or None)
    schedule_path = schedule_path_of(args.vertex_spec)
    with open(schedule_path, "w") as f:
      json.dump(schedule, f, indent=1, sort_keys=True)
    print(f"Vertex schedule ({args.schedule}): {schedule_path}")
  if args.dry_run:
    print("Beam args of the data stage:\n  " + "\n  ".join(pipeline.beam_pipeline_args))
    if training_job is not None:
      trainer = next(c for c in pipeline.components if c.id == stages.TRAINER.node_id)
      print("CustomJob request of the Trainer:")
      print(json.dumps(vertex_runner.dry_run_custom_job(trainer, training_job,
                                                        paths.pipeline_root),
                       indent=2, sort_keys=True))
    return 0
  if args.submit:
    if not args.gcp_project:
      raise ValueError("--submit needs --gcp_project")
    if schedule is not None:
      name = vertex_runner.create_schedule(schedule, project=args.gcp_project,
                                           region=args.gcp_region)
      print(f"Created the schedule: {name}")
      return 0
    name = vertex_runner.submit(args.vertex_spec, project=args.gcp_project,
                                region=args.gcp_region, pipeline_root=paths.pipeline_root,
                                display_name=args.pipeline_name,
                                enable_caching=not args.no_cache,
                                service_account=args.service_account or None)
    print(f"Submitted: {name}")
  return 0


def run_locally(args: argparse.Namespace, pipeline, paths: Paths, start: float) -> int:
  """Runs the pipeline (or the stages --from_stage / --to_stage select) with the local runner,
  then prints this run's summary from MLMD."""
  from pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from_nodes = [stages.by_name(args.from_stage).node_id] if args.from_stage else None
  to_nodes = [stages.by_name(args.to_stage).node_id] if args.to_stage else None
  base_run_id = (plan_partial_run(paths.metadata_path, args.pipeline_name, args.from_stage,
                                  rerun_hint=_rerun_hint(args))
                 if args.from_stage else None)
  logger.info("Pipeline %s: artifacts under %s, MLMD at %s", args.pipeline_name,
              paths.pipeline_root, paths.metadata_path)
  run_id = local_runner.new_run_id()
  error = None
  try:
    local_runner.run_local(pipeline, run_id=run_id, from_nodes=from_nodes, to_nodes=to_nodes,
                           base_run_id=base_run_id)
  except Exception as e:  # the summary says which stage failed; the error propagates
    error = f"{type(e).__name__}: {e}"
    raise
  finally:
    print_summary(paths.metadata_path, args.pipeline_name, run_id, paths.pipeline_root,
                  time.time() - start, error)
  return 0


def run(args: argparse.Namespace) -> int:
  """Runs or compiles the pipeline described by the parsed flags."""
  if args.list_configs:
    from retinanet import configs  # pylint: disable=g-import-not-at-top
    print("\n".join(configs.list_configs()))
    return 0
  if args.schedule and args.runner == "local":
    raise ValueError("--schedule needs --runner=vertex (a local run is scheduled by cron)")
  start = time.time()
  config = load_experiment_config(args)  # before TensorFlow loads: config errors come fast
  continuous = continuous_from_flags(args)  # (so do span flag errors)
  paths = resolve_paths(args)
  pipeline, training_job = build_pipeline(args, paths, config, continuous)
  if not paths.local:
    return compile_for_vertex(args, pipeline, training_job, paths)
  return run_locally(args, pipeline, paths, start)


def _rerun_hint(args: argparse.Namespace) -> str:
  previous = stages.previous(args.from_stage) if args.from_stage else None
  stage = previous.name if previous else ""
  return (f"rerun with the same flags but --to_stage={stage} instead of "
          f"--from_stage={args.from_stage} (or with neither, for a full run)")


def plan_partial_run(metadata_path: str, pipeline_name: str, from_stage: str,
                     rerun_hint: str = "") -> Optional[str]:
  """The id of the latest run that produced what `--from_stage` needs (TFX takes the skipped
  stages' artifacts from one earlier run), or a ValueError naming what is missing and
  how to produce it, before any work starts."""
  needed = stages.upstream_node_ids(from_stage)
  if not needed:
    return None
  runs, done = _runs_with(metadata_path, pipeline_name, needed)
  if runs:
    logger.info("--from_stage=%s takes %s outputs from run %s", from_stage, ", ".join(needed),
                runs[0])
    return runs[0]
  missing = [node for node in needed if not done.get(node)]
  detail = (f"never completed: {', '.join(missing)}" if missing
            else "they never completed in the same run")
  raise ValueError(
      f"--from_stage={from_stage} needs the outputs of {' and '.join(needed)} from one earlier "
      f"run of pipeline '{pipeline_name}' (TFX takes the skipped stages' artifacts from a single "
      f"run), but no run recorded in {metadata_path} has them ({detail}). "
      f"Produce them first: {rerun_hint}")


def _runs_with(metadata_path: str, pipeline_name: str,
               needed: Sequence[str]) -> tuple[List[str], Dict[str, Any]]:
  """(run ids in which every node of `needed` completed, {node: ever completed})."""
  from pipeline import metadata_queries as mq  # pylint: disable=g-import-not-at-top
  if not os.path.exists(metadata_path):
    return [], {}
  store = mq.open_store(metadata_path)
  runs = mq.runs_with_outputs(store, pipeline_name, needed)
  done = {node: any(e.last_known_state in mq.DONE_STATES
                    for e in mq.node_executions(store, pipeline_name, node))
          for node in needed}
  del store  # no connection stays open while the runner writes
  return runs, done


def print_summary(metadata_path: str, pipeline_name: str, run_id: str, pipeline_root: str,
                  seconds: float, error: Optional[str] = None) -> None:
  """Prints this run's stages, AP, blessing and push, read from MLMD."""
  from pipeline import summary  # pylint: disable=g-import-not-at-top
  print("\n".join(summary.summary_lines(
      pipeline_name=pipeline_name, run_id=run_id, pipeline_root=pipeline_root,
      metadata_path=metadata_path, seconds=seconds, error=error)))
