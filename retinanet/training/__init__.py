"""Distributed training of RetinaNet (tf.distribute + tf_keras custom loop, no TFX).

Entry point: `retinanet.training.train_lib.train(config, train_files=..., model_dir=...)`.
"""
