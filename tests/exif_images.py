"""Generated images with EXIF orientation tags, made with PIL (the reference, not our code).

`stored_pixels(displayed, o)` gives the stored pixels whose display under orientation o
(PIL's ImageOps.exif_transpose) is `displayed`; `jpeg(stored, o)` writes them with the
tag. A marked image has a bright block on a dark background, so a box can be checked
against where the block's pixels are.
"""
import io
import struct

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112
# PIL's exif_transpose turns stored -> displayed with these; their inverses make the
# stored pixels of a displayed image (6 and 8 are each other's inverse, the rest their own).
_INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}
DARK, BRIGHT = 20, 235


def displayed_by_pil(stored: np.ndarray, orientation: int) -> np.ndarray:
  """What a viewer shows: PIL's exif_transpose of `stored` tagged with `orientation`."""
  image = Image.fromarray(stored)
  image.getexif()[ORIENTATION_TAG] = orientation
  return np.asarray(ImageOps.exif_transpose(image))


def stored_pixels(displayed: np.ndarray, orientation: int) -> np.ndarray:
  """The stored pixels that display as `displayed` under `orientation` (checked with PIL)."""
  image = Image.fromarray(displayed)
  stored = np.asarray(image.transpose(_INVERSE[orientation]) if orientation in _INVERSE
                      else image)
  assert np.array_equal(displayed_by_pil(stored, orientation), displayed)
  return stored


def marked_image(height: int, width: int, block_yxyx) -> np.ndarray:
  """uint8 [height, width, 3]: DARK, with BRIGHT pixels in rows ymin..ymax-1, columns
  xmin..xmax-1 of `block_yxyx` (integer pixel corners)."""
  image = np.full((height, width, 3), DARK, np.uint8)
  ymin, xmin, ymax, xmax = block_yxyx
  image[ymin:ymax, xmin:xmax] = BRIGHT
  return image


def bright_box_yxyx(image: np.ndarray):
  """Pixel-corner box [ymin, xmin, ymax, xmax] of the bright pixels of a decoded image."""
  rows, cols = np.nonzero(image.mean(axis=-1) > (DARK + BRIGHT) / 2)
  return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def jpeg(stored: np.ndarray, orientation: int, quality: int = 95) -> bytes:
  """JPEG bytes of `stored` with the EXIF orientation tag, as PIL writes it: a JFIF APP0
  segment, then APP1 "Exif" with a big-endian (MM) TIFF header."""
  exif = Image.Exif()
  exif[ORIENTATION_TAG] = orientation
  exif[0x010F] = "TestCam"  # Make: an entry before the orientation in IFD0
  out = io.BytesIO()
  Image.fromarray(stored).save(out, format="JPEG", quality=quality, exif=exif.tobytes())
  return out.getvalue()


def jpeg_little_endian(stored: np.ndarray, orientation: int, entry_type: int = 3) -> bytes:
  """JPEG bytes with a hand-made little-endian (II) APP1 Exif segment right after SOI,
  its IFD0 holding a Make entry and the orientation (TIFF type `entry_type`)."""
  out = io.BytesIO()
  Image.fromarray(stored).save(out, format="JPEG", quality=95)
  plain = out.getvalue()
  entries = [struct.pack("<HHI4s", 0x010F, 2, 4, b"Cam\0"),
             struct.pack("<HHIHH", ORIENTATION_TAG, entry_type, 1, orientation, 0)]
  tiff = (b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)) + b"".join(entries)
          + b"\0\0\0\0")
  segment = b"Exif\0\0" + tiff
  return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + plain[2:]
