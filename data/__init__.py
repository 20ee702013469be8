"""Dataset reading, COCO -> TFRecord conversion, and the built-in sample data."""
import retinanet  # noqa: F401  (selects Keras 2 before anything loads TensorFlow)
