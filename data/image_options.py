"""What the conversion does with images that do not fit as they are (no TensorFlow here, so
the command line can offer the choices without loading it).

size_mismatch: the COCO JSON's height/width of an image is not its size as displayed
(the file's size with its EXIF orientation applied; data/example_codec.py):
  "skip"    the image is not written, counted as images_skipped.size_mismatch (the default);
  "rescale" its boxes are fitted to the image (rotated with the pixels when the JSON gives
            the stored size of a 90-degree-turned image, else scaled by the size ratio);
  "error"   the conversion stops, after counting every case, naming the files.
convert_unsupported: WebP, TIFF, BMP and GIF are stored as PNG (their pixels, EXIF
orientation applied, first frame) instead of being skipped as unsupported_format.
"""
from __future__ import annotations

import dataclasses

SKIP = "skip"
RESCALE = "rescale"
ERROR = "error"
SIZE_MISMATCH_POLICIES = (SKIP, RESCALE, ERROR)
DEFAULT_SIZE_MISMATCH = SKIP


@dataclasses.dataclass(frozen=True)
class ImageOptions:
  """The two options of the module docstring, checked when made."""
  size_mismatch: str = DEFAULT_SIZE_MISMATCH
  convert_unsupported: bool = False

  def __post_init__(self):
    if self.size_mismatch not in SIZE_MISMATCH_POLICIES:
      raise ValueError(f"size_mismatch={self.size_mismatch!r} is not one of "
                       f"{', '.join(SIZE_MISMATCH_POLICIES)}")
