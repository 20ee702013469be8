"""Anchors: hand-computed tiny grids, per-level counts, ordering vs a plain loop."""
import math

import numpy as np
import pytest

from retinanet.ops import anchors as anchors_lib


def test_single_level_tiny_grid():
  # 16x16 image, level 3 (stride 8): a 2x2 map, one 8x8 anchor per location.
  got = anchors_lib.generate_anchors((16, 16), 3, 3, anchor_size=1.0, scales_per_octave=1,
                                     aspect_ratios=(1.0,)).numpy()
  expected = [[0, 0, 8, 8], [0, 8, 8, 16], [8, 0, 16, 8], [8, 8, 16, 16]]  # row-major (y, x)
  np.testing.assert_allclose(got, expected)


def test_scales_and_aspect_ratios_at_one_location():
  # 8x8 image, level 3: one location centred at (4, 4); base side 8 and 8 * sqrt(2).
  got = anchors_lib.generate_anchors((8, 8), 3, 3, anchor_size=1.0, scales_per_octave=2,
                                     aspect_ratios=(0.5, 2.0)).numpy()
  r = math.sqrt(2.0)
  # ratio = width / height: 0.5 is tall (h = base * sqrt 2, w = base / sqrt 2).
  half = [(8 * r / 2, 8 / r / 2), (8 / r / 2, 8 * r / 2),      # scale 0: ratios 0.5, 2
          (8 * r * r / 2, 8 / 2), (8 / 2, 8 * r * r / 2)]      # scale 1: base 8 * sqrt 2
  expected = [[4 - hy, 4 - hx, 4 + hy, 4 + hx] for hy, hx in half]
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_two_levels_order():
  got = anchors_lib.generate_anchors((16, 16), 3, 4, anchor_size=1.0, scales_per_octave=1,
                                     aspect_ratios=(1.0,)).numpy()
  assert got.shape == (5, 4)
  np.testing.assert_allclose(got[4], [0, 0, 16, 16])  # level 4: one 16x16 anchor at (8, 8)


def test_counts_640_levels_3_to_7():
  counts = anchors_lib.anchors_per_level((640, 640), 3, 7, 3, (0.5, 1.0, 2.0))
  assert counts == {3: 80 * 80 * 9, 4: 40 * 40 * 9, 5: 20 * 20 * 9, 6: 10 * 10 * 9, 7: 5 * 5 * 9}
  assert list(counts.values()) == [57600, 14400, 3600, 900, 225]
  boxes = anchors_lib.generate_anchors((640, 640), 3, 7, 4.0, 3, (0.5, 1.0, 2.0))
  assert boxes.shape == (76725, 4)
  assert boxes.dtype == np.float32


def test_counts_non_square_not_multiple():
  counts = anchors_lib.anchors_per_level((100, 60), 3, 4, 1, (1.0,))
  assert counts == {3: 13 * 8, 4: 7 * 4}
  assert anchors_lib.generate_anchors((100, 60), 3, 4, 4.0, 1, (1.0,)).shape == (13 * 8 + 7 * 4, 4)


def test_default_areas_32_to_512():
  a = anchors_lib.Anchors((256, 256), 3, 7, 4.0, 3, (0.5, 1.0, 2.0))
  parts = a.split_by_level(a.boxes())
  for level, boxes in parts.items():
    b = boxes.numpy().reshape(-1, 9, 4)[0]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    base = 4.0 * 2 ** level
    expected = np.repeat([base ** 2 * 2 ** (2 * i / 3) for i in range(3)], 3)
    np.testing.assert_allclose(area, expected, rtol=1e-5)
  assert a.counts_per_level[3] == 32 * 32 * 9
  assert a.num_anchors == sum(a.counts_per_level.values())
  np.testing.assert_allclose(parts[3].numpy()[0:3, 2] - parts[3].numpy()[0:3, 0],
                             [32 * math.sqrt(2), 32, 32 / math.sqrt(2)], rtol=1e-5)


def test_matches_plain_loop_reference():
  size, levels, scales, ratios, anchor_size = (48, 32), (3, 4), 2, (0.5, 1.0, 2.0), 4.0
  ref = []
  for level in levels:
    s = 2 ** level
    for y in range(math.ceil(size[0] / s)):
      for x in range(math.ceil(size[1] / s)):
        for i in range(scales):
          for r in ratios:
            base = anchor_size * s * 2 ** (i / scales)
            h, w = base / math.sqrt(r), base * math.sqrt(r)
            cy, cx = (y + 0.5) * s, (x + 0.5) * s
            ref.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
  got = anchors_lib.generate_anchors(size, levels[0], levels[1], anchor_size, scales, ratios)
  np.testing.assert_allclose(got.numpy(), np.array(ref), rtol=1e-6, atol=1e-4)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="min_level"):
    anchors_lib.generate_anchors((64, 64), 5, 3, 4.0, 3, (1.0,))
  with pytest.raises(ValueError, match="aspect_ratios"):
    anchors_lib.generate_anchors((64, 64), 3, 5, 4.0, 3, ())
