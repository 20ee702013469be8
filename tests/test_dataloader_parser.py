"""Train / eval parsers on decoded tiny Examples."""
import numpy as np
import pytest
import tensorflow as tf

from retinanet.dataloader import decoder, parser, preprocess_ops
from retinanet.ops import anchors as anchors_lib
from retinanet.ops import box_coder, matcher
from tests.test_dataloader_decoder import make_example, random_image

SIZE = (64, 64)
MEAN = (100.0, 110.0, 120.0)
STD = (50.0, 60.0, 70.0)
VARIANCES = (0.1, 0.1, 0.2, 0.2)


def _anchors():
  return anchors_lib.generate_anchors(SIZE, 3, 6, 4.0, 2, (0.5, 1.0, 2.0))


def _train_parser(**overrides):
  kwargs = dict(output_size=SIZE, anchors=_anchors(), positive_iou=0.5, negative_iou=0.4,
                box_variances=VARIANCES, mean_rgb=MEAN, stddev_rgb=STD, max_instances=8)
  kwargs.update(overrides)
  return parser.TrainParser(**kwargs)


def _decoded(image, boxes=(), classes=(), is_crowd=None, image_id=1):
  example = make_example(image, boxes, classes, is_crowd, image_id=image_id, fmt="png")
  return decoder.decode_example(tf.constant(example.SerializeToString()))


def _seed(i):
  return tf.constant([7, i], tf.int64)


def _normalized(image):
  return (image.astype(np.float32) - np.array(MEAN, np.float32)) / np.array(STD, np.float32)


def test_augmented_boxes_stay_inside_and_keep_their_crowd_flags():
  # Object k has class k; only class 1 is crowd, so the flags must follow the classes.
  boxes = [[0.1, 0.1, 0.6, 0.5], [0.3, 0.4, 0.9, 0.95], [0.0, 0.0, 1.0, 1.0], [0.7, 0.05, 0.8, 0.1]]
  decoded = _decoded(random_image(80, 120), boxes, [0, 1, 2, 3], is_crowd=[0, 1, 0, 0])
  parse = _train_parser()
  counts = []
  for i in range(24):
    image, out_boxes, classes, is_crowd = [t.numpy() for t in parse.augment(decoded, _seed(i))]
    assert image.shape == SIZE + (3,) and np.all(np.isfinite(image))
    assert out_boxes.min() >= 0.0 and out_boxes[:, 0::2].max() <= SIZE[0] and \
        out_boxes[:, 1::2].max() <= SIZE[1]
    assert np.all(out_boxes[:, 2:] - out_boxes[:, :2] >= 1.0)
    np.testing.assert_array_equal(is_crowd, classes == 1)
    counts.append(len(classes))
  # Jitter down to 0.1 shrinks the small box below a pixel, 2x crops boxes away.
  assert min(counts) < 4 and max(counts) == 4


def test_flip_moves_boxes_as_computed_by_hand():
  image = random_image(64, 64)
  # Output size == image size and jitter 1: the geometry is the identity.
  decoded = _decoded(image, [[0.1, 0.2, 0.5, 0.6]], [3])
  kept = np.array([[6.4, 12.8, 32.0, 38.4]])
  flipped = np.array([[6.4, 64.0 - 38.4, 32.0, 64.0 - 12.8]])
  parse = _train_parser(scale_min=1.0, scale_max=1.0)
  outcomes = set()
  for i in range(16):
    out_image, out_boxes, _, _ = [t.numpy() for t in parse.augment(decoded, _seed(i))]
    if np.allclose(out_boxes, flipped, atol=1e-4):
      np.testing.assert_allclose(out_image, _normalized(image)[:, ::-1], atol=1e-4)
      outcomes.add("flipped")
    else:
      np.testing.assert_allclose(out_boxes, kept, atol=1e-4)
      np.testing.assert_allclose(out_image, _normalized(image), atol=1e-4)
      outcomes.add("kept")
  assert outcomes == {"flipped", "kept"}
  no_flip = _train_parser(scale_min=1.0, scale_max=1.0, horizontal_flip=False)
  for i in range(6):
    np.testing.assert_allclose(no_flip.augment(decoded, _seed(i))[1].numpy(), kept, atol=1e-4)


def test_same_seed_same_augmentation():
  decoded = _decoded(random_image(80, 120), [[0.1, 0.1, 0.6, 0.5]], [2])
  parse = _train_parser()
  a = parse(decoded, _seed(3))
  b = parse(decoded, _seed(3))
  tf.nest.map_structure(lambda x, y: np.testing.assert_array_equal(x.numpy(), y.numpy()), a, b)


def test_positive_box_targets_decode_to_their_ground_truth():
  boxes = [[0.0, 0.0, 0.5, 0.5], [0.25, 0.4, 1.0, 0.95], [0.5, 0.05, 0.9, 0.35]]
  decoded = _decoded(random_image(96, 80), boxes, [4, 1, 6])
  parse = _train_parser(scale_min=0.8, scale_max=1.5)
  anchors = _anchors()
  total_positives = 0
  for i in range(8):
    _, labels = parse(decoded, _seed(i))
    labels = {k: v.numpy() for k, v in labels.items()}
    positive = labels["match_state"] == matcher.POSITIVE
    assert labels["num_positives"] == positive.sum()
    total_positives += positive.sum()
    decoded_boxes = box_coder.decode(labels["box_targets"][positive],
                                     tf.boolean_mask(anchors, positive), VARIANCES).numpy()
    valid = labels["gt_classes"] >= 0
    gt_boxes, gt_classes = labels["gt_boxes"][valid], labels["gt_classes"][valid]
    for box, cls in zip(decoded_boxes, labels["class_targets"][positive]):
      distance = np.abs(gt_boxes - box).max(axis=1)
      assert distance.min() < 1e-3
      assert gt_classes[distance.argmin()] == cls
  assert total_positives > 0


def test_image_without_boxes_gives_all_negative_targets():
  _, labels = _train_parser()(_decoded(random_image(50, 70)), _seed(0))
  labels = {k: v.numpy() for k, v in labels.items()}
  assert np.all(labels["match_state"] == matcher.NEGATIVE)
  assert labels["num_positives"] == 0
  assert not labels["box_targets"].any() and np.all(np.isfinite(labels["box_targets"]))
  np.testing.assert_array_equal(labels["gt_classes"], -1)
  assert labels["class_targets"].shape == (_anchors().shape[0],)


def test_gt_padded_and_truncated_to_max_instances_but_every_object_encoded():
  boxes = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 0.5],
           [0.2, 0.2, 0.8, 0.8]]
  decoded = _decoded(random_image(64, 64), boxes, [0, 1, 2, 3, 4])
  parse = _train_parser(scale_min=1.0, scale_max=1.0, horizontal_flip=False, max_instances=3)
  _, labels = parse(decoded, _seed(0))
  np.testing.assert_array_equal(labels["gt_classes"].numpy(), [0, 1, 2])
  np.testing.assert_allclose(labels["gt_boxes"].numpy(),
                             [[0, 0, 32, 32], [32, 32, 64, 64], [0, 32, 32, 64]], atol=1e-4)
  positive_classes = set(labels["class_targets"].numpy()[
      labels["match_state"].numpy() == matcher.POSITIVE])
  assert positive_classes == {0, 1, 2, 3, 4}

  parse = _train_parser(scale_min=1.0, scale_max=1.0, horizontal_flip=False, max_instances=4)
  _, labels = parse(_decoded(random_image(64, 64), boxes[:2], [5, 6], is_crowd=[0, 1]), _seed(0))
  np.testing.assert_array_equal(labels["gt_classes"].numpy(), [5, 6, -1, -1])
  np.testing.assert_array_equal(labels["gt_is_crowd"].numpy(), [False, True, False, False])
  np.testing.assert_array_equal(labels["gt_boxes"].numpy()[2:], 0.0)


def test_degenerate_boxes_dropped_with_their_class_and_crowd_flag():
  # The middle box is 0.32 px tall.
  boxes = [[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.605, 0.9], [0.5, 0.5, 1.0, 1.0]]
  decoded = _decoded(random_image(64, 64), boxes, [1, 2, 3], is_crowd=[0, 1, 1])
  parse = _train_parser(scale_min=1.0, scale_max=1.0, horizontal_flip=False)
  _, boxes_out, classes, is_crowd = parse.augment(decoded, _seed(0))
  np.testing.assert_array_equal(classes.numpy(), [1, 3])
  np.testing.assert_array_equal(is_crowd.numpy(), [False, True])
  np.testing.assert_allclose(boxes_out.numpy(), [[0, 0, 32, 32], [32, 32, 64, 64]], atol=1e-4)


def test_eval_parser_resizes_pads_and_maps_boxes_back():
  image = random_image(50, 100)
  boxes = [[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]]
  decoded = _decoded(image, boxes, [3, 4], is_crowd=[0, 1], image_id=77)
  out_image, labels = parser.EvalParser(output_size=SIZE, max_instances=4, mean_rgb=MEAN,
                                        stddev_rgb=STD)(decoded)
  labels = {k: v.numpy() for k, v in labels.items()}
  assert labels["image_id"] == 77 and labels["is_valid"]
  np.testing.assert_array_equal(labels["original_size"], [50, 100])
  np.testing.assert_allclose(labels["scale"], [0.64, 0.64])
  reference = tf.image.resize(image, [32, 64]).numpy()
  np.testing.assert_allclose(out_image.numpy()[:32], _normalized(reference), atol=1e-3)
  assert not out_image.numpy()[32:].any()
  np.testing.assert_allclose(labels["gt_boxes"][:2], [[3.2, 12.8, 16.0, 57.6], [0, 0, 32, 64]],
                             atol=1e-4)
  np.testing.assert_array_equal(labels["gt_classes"], [3, 4, -1, -1])
  np.testing.assert_array_equal(labels["gt_is_crowd"], [False, True, False, False])
  np.testing.assert_allclose(labels["gt_areas"], [1.0, 1.0, 0.0, 0.0])  # make_example's areas
  back = preprocess_ops.boxes_to_original_image(labels["gt_boxes"][:2], labels["scale"],
                                                labels["original_size"]).numpy()
  np.testing.assert_allclose(back, np.array(boxes) * [50, 100, 50, 100], atol=1e-3)


def test_eval_padding_element_matches_the_element_structure():
  eval_parser = parser.EvalParser(output_size=SIZE, max_instances=4)
  real = eval_parser(_decoded(random_image(30, 40), [[0.1, 0.1, 0.5, 0.5]], [1]))
  padding = eval_parser.padding_element()
  tf.nest.assert_same_structure(real, padding)
  for a, b in zip(tf.nest.flatten(real), tf.nest.flatten(padding)):
    assert a.dtype == b.dtype and a.shape == b.shape
  labels = padding[1]
  assert labels["image_id"] == -1 and not labels["is_valid"]
  np.testing.assert_array_equal(labels["gt_classes"].numpy(), -1)


def test_parser_arguments_are_checked():
  with pytest.raises(ValueError, match="scale_min"):
    _train_parser(scale_min=2.0, scale_max=1.0)
  with pytest.raises(ValueError, match="output_size"):
    parser.EvalParser(output_size=(64,))
