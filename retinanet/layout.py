"""Names shared by writers and readers: files inside artifacts and model directories, and
the MLMD custom-property keys the pipeline's components record.

One home, so the code that writes a name and the code that reads it (Trainer,
Evaluator, Pusher, the run summary, lineage, tests) cannot drift apart;
tests/test_one_house.py checks that no other module spells these strings.
Plain constants: importing this module loads nothing.
"""

# --- A trained-model directory (retinanet/model_dir.py): the Trainer's Model artifact
# (under SERVING_MODEL_DIR), an export, a pushed version.
SERVING_MODEL_DIR = "Format-Serving"    # tfx.types.standard_artifacts.Model's serving dir
SAVED_MODEL_FILE = "saved_model.pb"
CONFIG_FILE = "config.json"
LABEL_MAP_FILE = "label_map.json"
CHECKPOINT_DIR = "checkpoint"
FORMATS_DIR = "formats"                  # extra formats of a pushed version (portable.py)
FORMATS_MANIFEST_FILE = "manifest.json"

# --- The data stage's artifacts (data/convert.py, components/example_gen.py).
SPLIT_DIR_PREFIX = "Split-"              # Examples: <uri>/Split-<split>/*.gz
GROUND_TRUTH_DIR = "ground_truth"        # Examples: <uri>/ground_truth/instances_<split>.json
CONVERSION_REPORT_FILE = "conversion_report.json"   # counts that reconcile, per split

# --- The statistics stage's artifact (data/box_statistics.py).
BOX_STATISTICS_REPORT_FILE = "report.json"

# --- The Trainer's outputs (components/trainer/).
TRAINING_RESULT_FILE = "training_result.json"   # written by a training job's chief
TENSORBOARD_DIR = "tensorboard"                 # in the ModelRun artifact

# --- The Evaluator's ModelEvaluation artifact (components/evaluator.py).
METRICS_FILE = "metrics.json"
PER_CLASS_AP_FILE = "per_class_ap.json"
DETECTIONS_FILE = "detections.json"             # also the inference CLI's output
EVALUATION_SUMMARY_FILE = "summary.txt"
REPORT_FILE = "report.html"


class ExamplesKeys:
  """Examples / LabelMap / ConversionReport artifacts (CocoExampleGen)."""
  NUM_CLASSES = "num_classes"

  @staticmethod
  def examples(split: str) -> str:
    return f"{split}_examples"

  @staticmethod
  def shards(split: str) -> str:
    return f"{split}_shards"

  @staticmethod
  def count(split: str, key: str) -> str:
    """A conversion count of one split, e.g. count("train", "images_in")."""
    return f"{split}_{key}"


class BoxStatisticsKeys:
  """The BoxStatistics artifact (BoxStatisticsGen)."""
  COVERAGE = "coverage"
  MIN_COVERAGE = "min_coverage"
  COVERAGE_OK = "coverage_ok"
  NUM_ANOMALIES = "num_anomalies"
  SUGGESTED_ANCHOR_SIZE = "suggested_anchor_size"
  SUGGESTED_ASPECT_RATIOS = "suggested_aspect_ratios"
  SUGGESTED_COVERAGE = "suggested_coverage"

  @staticmethod
  def boxes(split: str) -> str:
    return f"{split}_boxes"

  @staticmethod
  def split_coverage(split: str) -> str:
    return f"{split}_coverage"


class ModelKeys:
  """The Model and ModelRun artifacts (RetinaNetTrainer)."""
  TRAINING_FINGERPRINT = "training_fingerprint"
  RESUMED_FROM = "resumed_from"
  NEWEST_SPAN = "newest_span"      # the newest data span trained on (0: not a span)
  TRAINED_SPANS = "trained_spans"  # all of them, e.g. "1,2" (continuous training's window)
  FINAL_STEP = "final_step"
  FINAL_TOTAL_LOSS = "final_total_loss"
  TRAIN_IMAGES_PER_SECOND = "train_images_per_second"
  TRUNCATED_OBJECTS = "truncated_objects"
  SKIPPED_RECORDS = "skipped_records"
  NUM_CLASSES = "num_classes"
  STRATEGY = "strategy"
  ANCHOR_FIT_DECISION = "anchor_fit_decision"
  FINETUNE_SOURCE = "finetune_source"
  FINETUNE_RESTORED = "finetune_restored"
  FINETUNE_REINITIALIZED = "finetune_reinitialized"
  FINETUNE_FROZEN = "finetune_frozen"
  VERTEX_JOB_NAME = "vertex_job_name"
  VERTEX_JOB_CONSOLE = "vertex_job_console"
  WALL_TIME_SECONDS = "wall_time_seconds"         # on the ModelRun


class ValidationKeys:
  """DataValidator's Schema and ExampleAnomalies artifacts (components/data_validator.py)."""
  SPAN = "validated_span"        # the span this execution validated
  SCHEMA_SPAN = "schema_span"    # the span the schema (and drift reference) comes from
  ACCEPTED = "accepted_anomalies"
  ANOMALY_KINDS = "anomaly_kinds"
  BLOCKING = "blocking"
  MESSAGE = "message"


class EvaluationKeys:
  """The ModelEvaluation artifact (RetinaNetEvaluator); also the COCO metric names it records."""
  HEADLINE_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax100")
  AP = "AP"
  BASELINE_AP = "baseline_AP"
  HELD_OUT_AP = "held_out_AP"                  # continuous training: the first span's val
  BASELINE_HELD_OUT_AP = "baseline_held_out_AP"
  NUM_IMAGES = "num_images"
  SPLIT = "split"
  GROUND_TRUTH = "ground_truth"
  SAVED_MODEL_DIR = "saved_model_dir"
  REPORT = "report"


class BlessingKeys:
  """The ModelBlessing artifact: what the Evaluator evaluated, which the Pusher checks before
  it pushes those exact bytes. BLESSED and CURRENT_MODEL* are TFX's own keys (read by
  LatestBlessedModelStrategy and the standard Pusher)."""
  BLESSED = "blessed"
  REASON = "reason"
  AP = "AP"
  CURRENT_MODEL = "current_model"
  CURRENT_MODEL_ID = "current_model_id"
  BASELINE_MODEL = "baseline_model"
  BASELINE_MODEL_ID = "baseline_model_id"
  SAVED_MODEL_DIR = "saved_model_dir"
  SAVED_MODEL_DIGEST = "saved_model_digest"
  POSTPROCESS = "postprocess"
  # The pre-push validation of those bytes, run in a fresh process beside the evaluation
  # (a JSON report), and the digest it was run on: the Pusher reuses it for the same bytes.
  VALIDATION = "pre_push_validation"
  VALIDATED_DIGEST = "validated_digest"
  BLESSED_MARKER = "BLESSED"          # files in the blessing's directory
  NOT_BLESSED_MARKER = "NOT_BLESSED"


class PushKeys:
  """The PushedModel artifact (RetinaNetPusher)."""
  PUSHED = "pushed"
  REASON = "reason"
  DESTINATION = "pushed_destination"
  VERSION = "pushed_version"
  MODEL_URI = "model_uri"
  SAVED_MODEL_DIGEST = "saved_model_digest"
  VALIDATION = "validation"
  EXPORT_FORMATS = "export_formats"

  @staticmethod
  def digest(fmt: str) -> str:
    """The sha256 of one pushed extra format."""
    return f"digest_{fmt}"
