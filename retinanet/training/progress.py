"""Training progress: the ancestor project's log line, TensorBoard scalars, a TTY progress bar.

Log line (one every log_every steps):
  [global_step 200/33750] [ETA: 01:50:14] [137.74 imgs/s] {'box-loss': 0.007, ...,
  'execution-time': 39.67, 'learning-rate': 0.069}
"""
from __future__ import annotations

import sys
from typing import IO, Dict, Mapping, Optional

import tensorflow as tf

# Metric keys of the train step -> names in the log line and TensorBoard, in log order.
LOG_NAMES = (
    ("box_loss", "box-loss"),
    ("class_loss", "class-loss"),
    ("weighted_loss", "weighted-loss"),
    ("l2_regularization", "l2-regularization"),
    ("total_loss", "total-loss"),
    ("gradient_norm", "gradient-norm"),
    ("execution_time", "execution-time"),
    ("learning_rate", "learning-rate"),
)


def format_eta(seconds: float) -> str:
  """HH:MM:SS (hours may exceed 24); '--:--:--' when unknown."""
  if seconds is None or not seconds >= 0 or seconds == float("inf"):
    return "--:--:--"
  seconds = int(round(seconds))
  return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def rounded_metrics(metrics: Mapping[str, float], digits: int = 3) -> Dict[str, float]:
  """The log dict: LOG_NAMES order, dashed names, values rounded (execution time to 2)."""
  out = {}
  for key, name in LOG_NAMES:
    if key in metrics:
      out[name] = round(float(metrics[key]), 2 if key == "execution_time" else digits)
  return out


def format_log_line(step: int, total_steps: int, eta_seconds: float, images_per_second: float,
                    metrics: Mapping[str, float]) -> str:
  return (f"[global_step {step}/{total_steps}] [ETA: {format_eta(eta_seconds)}] "
          f"[{images_per_second:.2f} imgs/s] {rounded_metrics(metrics)}")


def write_scalars(writer: Optional[tf.summary.SummaryWriter], step: int,
                  scalars: Mapping[str, float], prefix: str = "") -> None:
  """One tf.summary scalar per entry (names as in the log line)."""
  if writer is None:
    return
  with writer.as_default(step=step):
    for name, value in scalars.items():
      tf.summary.scalar(prefix + name, float(value))
  writer.flush()


class ProgressBar:
  """A single '\\r'-updated line on a TTY stream; silent when the stream is not a TTY."""

  def __init__(self, total_steps: int, stream: Optional[IO[str]] = None, width: int = 30):
    self.total_steps = max(total_steps, 1)
    self.stream = stream if stream is not None else sys.stderr
    self.width = width
    self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

  def update(self, step: int, images_per_second: float, total_loss: float) -> None:
    if not self.enabled:
      return
    done = int(self.width * min(step, self.total_steps) / self.total_steps)
    bar = "#" * done + "." * (self.width - done)
    self.stream.write(f"\r[{bar}] {step}/{self.total_steps} {images_per_second:.1f} imgs/s "
                      f"loss {total_loss:.3f}")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.stream.write("\n")
      self.stream.flush()
