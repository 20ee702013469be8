"""RetinaNet in pure TensorFlow + tf_keras (no TFX imports).

Usable on its own (e.g. from a notebook); the TFX components in `components/`
are thin adapters around it.
"""
