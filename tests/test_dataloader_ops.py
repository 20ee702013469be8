"""Pure preprocessing ops: hand-computed geometry, tf.image references, round trips."""
import numpy as np
import pytest
import tensorflow as tf

from retinanet.dataloader import preprocess_ops as ops


def _geometry(image_size, output_size, jitter=1.0, fraction=(0.0, 0.0)):
  g = ops.resize_crop_geometry(image_size, output_size, jitter, fraction)
  return {k: v.numpy() for k, v in g._asdict().items()}


def test_eval_geometry_fits_the_long_side():
  g = _geometry((100, 200), (64, 64))
  # scale = min(64 / 100, 64 / 200) = 0.32 -> 32 x 64, no crop.
  np.testing.assert_array_equal(g["scaled_size"], [32, 64])
  np.testing.assert_allclose(g["image_scale"], [0.32, 0.32])
  np.testing.assert_array_equal(g["offset"], [0, 0])
  np.testing.assert_array_equal(g["crop_size"], [32, 64])


def test_eval_geometry_reports_the_factor_actually_applied_after_rounding():
  g = _geometry((427, 640), (64, 64))
  # scale 0.1 -> 42.7 rounds to 43 rows: y factor 43 / 427, x factor 64 / 640.
  np.testing.assert_array_equal(g["scaled_size"], [43, 64])
  np.testing.assert_allclose(g["image_scale"], [43 / 427, 0.1], rtol=1e-6)


def test_jitter_geometry_crops_at_the_fractional_offset():
  g = _geometry((100, 200), (64, 64), jitter=2.0, fraction=(0.5, 0.5))
  # target 128 -> scale min(1.28, 0.64) = 0.64 -> 64 x 128; max offset (0, 64) -> (0, 32).
  np.testing.assert_array_equal(g["scaled_size"], [64, 128])
  np.testing.assert_array_equal(g["offset"], [0, 32])
  np.testing.assert_array_equal(g["crop_size"], [64, 64])
  g = _geometry((100, 200), (64, 64), jitter=0.5, fraction=(0.9, 0.9))
  # target 32 -> scale 0.16 -> 16 x 32; smaller than the output: no offset.
  np.testing.assert_array_equal(g["scaled_size"], [16, 32])
  np.testing.assert_array_equal(g["offset"], [0, 0])
  np.testing.assert_array_equal(g["crop_size"], [16, 32])


@pytest.mark.parametrize("jitter,fraction", [(2.0, (0.3, 0.8)), (1.0, (0.0, 0.0)),
                                             (1.7, (1.0, 0.5)), (0.3, (0.5, 0.5))])
def test_resized_crop_samples_the_source_where_the_geometry_says(jitter, fraction):
  """On a ramp image (value = 2 * row + col) bilinear resizing is exact away from the borders.

  Output pixel (i, j) samples the source at ((i + offset_y + 0.5) / scale_y - 0.5,
  (j + offset_x + 0.5) / scale_x - 0.5) (half-pixel centres).
  """
  h, w = 97, 131
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  ramp = np.repeat((2 * rows + cols)[..., None], 3, axis=-1).astype(np.float32)
  geometry = ops.resize_crop_geometry((h, w), (64, 96), jitter, fraction)
  got = ops.resize_and_crop_image(tf.constant(ramp), geometry).numpy()
  crop_h, crop_w = geometry.crop_size.numpy()
  assert got.shape == (crop_h, crop_w, 3)
  (sy, sx), (oy, ox) = geometry.image_scale.numpy(), geometry.offset.numpy()
  src_y = (np.arange(crop_h) + oy + 0.5) / sy - 0.5
  src_x = (np.arange(crop_w) + ox + 0.5) / sx - 0.5
  expected = 2 * src_y[:, None] + src_x[None, :]
  inside = ((src_y >= 0) & (src_y <= h - 1))[:, None] & ((src_x >= 0) & (src_x <= w - 1))[None, :]
  assert inside.mean() > 0.9
  np.testing.assert_allclose(got[..., 0][inside], expected[inside], atol=2e-3)


def test_boxes_follow_scale_and_offset_and_are_clipped():
  # scale 0.64, offset (0, 32)
  geometry = ops.resize_crop_geometry((100, 200), (64, 64), 2.0, (0.5, 0.5))
  boxes = tf.constant([[10.0, 20.0, 50.0, 100.0],     # straddles the left edge of the crop
                       [0.0, 150.0, 100.0, 200.0],    # right of the crop
                       [50.0, 60.0, 60.0, 80.0]])     # inside
  got = ops.resize_and_crop_boxes(boxes, geometry).numpy()
  np.testing.assert_allclose(got, [[6.4, 0.0, 32.0, 32.0],
                                   [0.0, 64.0, 64.0, 64.0],
                                   [32.0, 6.4, 38.4, 19.2]], atol=1e-4)
  keep = ops.boxes_large_enough(tf.constant(got), 1.0).numpy()
  np.testing.assert_array_equal(keep, [True, False, True])


@pytest.mark.parametrize("image_size", [(480, 640), (427, 640), (640, 427), (33, 97), (64, 64)])
def test_eval_boxes_round_trip_to_original_pixels(image_size):
  rng = np.random.default_rng(image_size[0])
  h, w = image_size
  y = np.sort(rng.uniform(0, h, (10, 2)), axis=1)
  x = np.sort(rng.uniform(0, w, (10, 2)), axis=1)
  original = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1).astype(np.float32)
  geometry = ops.resize_crop_geometry(image_size, (64, 64))
  model_boxes = ops.resize_and_crop_boxes(tf.constant(original), geometry)
  assert model_boxes.numpy().max() <= 64.0
  back = ops.boxes_to_original_image(model_boxes, geometry.image_scale, image_size).numpy()
  np.testing.assert_allclose(back, original, rtol=1e-5, atol=1e-3)


def test_boxes_to_original_image_batched_and_clipped_and_padding_safe():
  boxes = tf.constant([[[10.0, 10.0, 70.0, 70.0]], [[1.0, 2.0, 3.0, 4.0]]])  # [2, 1, 4]
  scale = tf.constant([[0.5, 0.25], [0.0, 0.0]])  # second row: batch padding
  original_size = tf.constant([[100, 100], [-1, -1]])
  got = ops.boxes_to_original_image(boxes, scale, original_size).numpy()
  np.testing.assert_allclose(got[0], [[20.0, 40.0, 100.0, 100.0]])  # 140, 280 clipped to 100
  assert np.all(np.isfinite(got[1]))


def test_flip_left_right_by_hand():
  image = tf.reshape(tf.range(2 * 10 * 3), [2, 10, 3])
  boxes = tf.constant([[1.0, 2.0, 3.0, 5.0]])
  flipped_image, flipped_boxes = ops.flip_left_right(image, boxes)
  np.testing.assert_allclose(flipped_boxes.numpy(), [[1.0, 5.0, 3.0, 8.0]])
  np.testing.assert_array_equal(flipped_image.numpy()[:, 0], image.numpy()[:, 9])
  np.testing.assert_array_equal(flipped_image.numpy()[:, 9], image.numpy()[:, 0])


def test_normalize_and_pad():
  image = tf.fill([2, 3, 3], tf.constant(110, tf.uint8))
  out = ops.normalize_image(image, (100.0, 110.0, 120.0), (2.0, 5.0, 10.0))
  np.testing.assert_allclose(out.numpy()[0, 0], [5.0, 0.0, -1.0])
  padded = ops.pad_image(out, (4, 5)).numpy()
  assert padded.shape == (4, 5, 3)
  np.testing.assert_array_equal(padded[:2, :3], out.numpy())
  assert not padded[2:].any() and not padded[:, 3:].any()


def test_pad_or_truncate():
  values = tf.constant([[1.0, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]])
  np.testing.assert_array_equal(ops.pad_or_truncate(values, 2, 0.0).numpy(), values.numpy()[:2])
  padded = ops.pad_or_truncate(values, 5, 0.0)
  assert padded.shape.as_list() == [5, 4]
  np.testing.assert_array_equal(padded.numpy()[3:], 0.0)
  np.testing.assert_array_equal(ops.pad_or_truncate(tf.constant([4, 5]), 4, -1).numpy(),
                                [4, 5, -1, -1])
  np.testing.assert_array_equal(ops.pad_or_truncate(tf.zeros([0], tf.bool), 2, False).numpy(),
                                [False, False])


def test_boxes_large_enough_drops_thin_and_inverted_boxes():
  boxes = tf.constant([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 0.5, 5.0], [0.0, 0.0, 5.0, 0.0],
                       [3.0, 3.0, 1.0, 1.0]])
  np.testing.assert_array_equal(ops.boxes_large_enough(boxes, 1.0).numpy(),
                                [True, False, False, False])
  np.testing.assert_array_equal(ops.boxes_large_enough(boxes, 0.0).numpy(),
                                [True, True, False, False])
