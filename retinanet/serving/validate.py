"""Pre-push checks of an exported model: content digest and a canned-request smoke test.

In the spirit of TFX's InfraValidator: before a version becomes visible to
TF Serving, the directory that will be served is loaded in a *fresh process*
(nothing of the exporting process's state can mask a broken file) and must
answer a canned batch of requests on every signature with well-formed outputs.

    python -m retinanet.serving.validate EXPORT_DIR     # prints a JSON report, exit 0 / 1

`saved_model_digest` fingerprints the exact bytes of a model directory: the
blessing records the digest of what was evaluated and the Pusher pushes only
a directory with that digest.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

from retinanet import console, layout

# Canned requests: (height, width) of synthetic images, two sizes in one batch.
CANNED_SIZES = ((120, 160), (97, 64))
DEFAULT_TIMEOUT_SECONDS = 600.0


class ValidationError(RuntimeError):
  """The exported model failed to load or to answer well-formed outputs."""


# Sub-directory of a pushed version holding the extra formats (portable.py); not part of
# the SavedModel's digest, which must stay the evaluated one.


def saved_model_digest(directory: str) -> str:
  """sha256 over every file under `directory` (relative path and bytes), in path order;
  the `formats/` sub-directory of a pushed version is left out."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = []
  for root, _, names in tf.io.gfile.walk(directory):
    if os.path.relpath(root, directory).split(os.sep)[0] == layout.FORMATS_DIR:
      continue
    files += [os.path.join(root, name) for name in names]
  if not files:
    raise ValidationError(f"{directory} holds no files")
  digest = hashlib.sha256()
  for path in sorted(files):
    digest.update(os.path.relpath(path, directory).encode())
    _hash_file(digest, path)
  return digest.hexdigest()


def file_digest(path: str) -> str:
  """sha256 of one file's bytes."""
  return _hash_file(hashlib.sha256(), path).hexdigest()


def _hash_file(digest: Any, path: str) -> Any:
  """Feeds a file's bytes (local or gs://) into digest in 4 MiB chunks; returns digest."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, "rb") as f:
    while chunk := f.read(1 << 22):
      digest.update(chunk)
  return digest


def canned_images():
  """The canned request images (uint8, CANNED_SIZES), also used to verify extra formats."""
  return _canned_images()


def _canned_images() -> List[Any]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  return [rng.randint(0, 256, (h, w, 3)).astype(np.uint8) for h, w in CANNED_SIZES]


def _png(image) -> bytes:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG")
  return buffer.getvalue()


def check_outputs(outputs: Dict[str, Any], sizes: List[Tuple[int, int]],
                  category_ids: List[int], signature: str) -> None:
  """Raises ValidationError unless `outputs` follow the export contract (export.py)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  out = {k: np.asarray(v) for k, v in outputs.items()}
  where = f"signature {signature}"
  missing = [k for k in export.OUTPUT_KEYS if k not in out]
  if missing:
    raise ValidationError(f"{where}: outputs {missing} are missing")
  batch, slots = len(sizes), out["scores"].shape[-1]
  shapes = {"boxes": (batch, slots, 4), "scores": (batch, slots), "class_ids": (batch, slots),
            "category_ids": (batch, slots), "valid_detections": (batch,),
            export.IMAGE_ID_KEY: (batch,), "image_size": (batch, 2)}
  for key, shape in shapes.items():
    if out[key].shape != shape:
      raise ValidationError(f"{where}: {key} has shape {out[key].shape}, expected {shape}")
  if not (np.all(np.isfinite(out["boxes"])) and np.all(np.isfinite(out["scores"]))):
    raise ValidationError(f"{where}: boxes or scores are not finite")
  np.testing.assert_array_equal(out["image_size"], np.asarray(sizes), err_msg=where)
  known = set(category_ids)
  for b, (h, w) in enumerate(sizes):
    n = int(out["valid_detections"][b])
    if not 0 <= n <= slots:
      raise ValidationError(f"{where}: valid_detections {n} is outside 0..{slots}")
    boxes, scores = out["boxes"][b, :n], out["scores"][b, :n]
    if np.any(scores < 0) or np.any(scores > 1) or np.any(np.diff(scores) > 1e-6):
      raise ValidationError(f"{where}: scores must be in [0, 1] and descending")
    inside = ((boxes >= 0) & (boxes <= np.array([h, w, h, w]) + 1e-3)).all()
    if not inside or np.any(boxes[:, 2:] < boxes[:, :2]):
      raise ValidationError(f"{where}: boxes are not [ymin, xmin, ymax, xmax] inside the image")
    unknown = set(out["category_ids"][b, :n].tolist()) - known
    if unknown:
      raise ValidationError(f"{where}: category ids {sorted(unknown)} are not in the label map")


def validate_export_dir(export_dir: str) -> Dict[str, Any]:
  """Loads `export_dir` and sends the canned batch to every signature; returns a report.

  Raises ValidationError (or what loading raises) when anything is wrong.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from retinanet.serving import export  # pylint: disable=g-import-not-at-top
  label_map = export.load_label_map(export_dir)
  model = tf.saved_model.load(export_dir)
  missing = [name for name in export.SIGNATURE_NAMES if name not in model.signatures]
  if missing:
    raise ValidationError(f"{export_dir}: signatures {missing} are missing")
  images = _canned_images()
  encoded = tf.constant([_png(image) for image in images])
  ids = tf.constant([11, 12], tf.int64)
  requests = {
      export.SERVE_ENCODED: dict(encoded_images=encoded),
      export.SERVE_ENCODED_WITH_ID: dict(encoded_images=encoded, image_id=ids),
  }
  # uint8 signatures take one size per batch: send the first image twice.
  same = tf.constant(np.stack([images[0], images[0]]))
  uint8_sizes = [CANNED_SIZES[0]] * 2
  requests_uint8 = {
      export.SERVING_DEFAULT: dict(images=same),
      export.SERVE_IMAGES: dict(images=same),
      export.SERVE_IMAGES_WITH_ID: dict(images=same, image_id=ids),
  }
  answered = {}
  for name, kwargs in list(requests.items()) + list(requests_uint8.items()):
    outputs = model.signatures[name](**kwargs)
    sizes = uint8_sizes if name in requests_uint8 else list(CANNED_SIZES)
    check_outputs(outputs, sizes, list(label_map.category_ids), name)
    if "image_id" in kwargs and not (outputs[export.IMAGE_ID_KEY].numpy() == [11, 12]).all():
      raise ValidationError(f"signature {name}: image_id is not passed through")
    answered[name] = [int(v) for v in outputs["valid_detections"].numpy()]
  return {"export_dir": export_dir, "valid": True, "valid_detections": answered,
          "process": os.getpid()}


class FreshValidation:
  """`validate_export_dir` running in a new Python process (`start_in_fresh_process`):
  started early, so that it runs beside other work (the Evaluator's); `report()` waits."""

  def __init__(self, export_dir: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS):
    self.export_dir = export_dir
    self._timeout = timeout_seconds
    self._started = time.time()
    self._done = False
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    self._process = subprocess.Popen(
        [sys.executable, "-m", "retinanet.serving.validate", export_dir],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

  def report(self) -> Dict[str, Any]:
    """The report: "valid" (bool) and, when False, "error" (one line)."""
    left = max(0.0, self._timeout - (time.time() - self._started))
    try:
      stdout, stderr = self._process.communicate(timeout=left)
      self._done = True
    except subprocess.TimeoutExpired:
      self.cancel()
      return {"export_dir": self.export_dir, "valid": False,
              "error": f"no answer within {self._timeout:.0f} s"}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
      return json.loads(lines[-1])
    tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"export_dir": self.export_dir, "valid": False,
            "error": f"validation process exited with {self._process.returncode}: {tail}"}

  def cancel(self) -> None:
    """Stops the process (nothing when its report was read)."""
    if self._done:
      return
    self._done = True
    if self._process.poll() is None:
      self._process.kill()
    self._process.communicate()


def start_in_fresh_process(export_dir: str,
                           timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> FreshValidation:
  """Starts validating `export_dir` in a new Python process; `.report()` waits for it."""
  return FreshValidation(export_dir, timeout_seconds)


def validate_in_fresh_process(export_dir: str,
                              timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Dict[str, Any]:
  """Runs `validate_export_dir` in a new Python process; returns its report."""
  return start_in_fresh_process(export_dir, timeout_seconds).report()


def validation_report(export_dir: str) -> Dict[str, Any]:
  """`validate_export_dir`'s report, or {"valid": False, "error": one line} when it raises:
  what the fresh validation process prints."""
  try:
    return validate_export_dir(export_dir)
  except Exception as e:  # pylint: disable=broad-except
    return {"export_dir": export_dir, "valid": False,
            "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def main(argv: List[str]) -> int:
  argv = [a for a in argv if a != console.VERBOSE_FLAG]
  if len(argv) != 1:
    print("usage: python -m retinanet.serving.validate EXPORT_DIR", file=sys.stderr)
    return 2
  report = validation_report(argv[0])
  print(json.dumps(report, sort_keys=True))
  return 0 if report["valid"] else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
