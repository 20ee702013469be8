"""Pipeline assembly (`create_pipeline`) and runners."""
import retinanet  # noqa: F401  (selects Keras 2 before anything loads TensorFlow)
