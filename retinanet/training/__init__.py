"""Distributed training of RetinaNet (tf.distribute + tf_keras custom loop, no TFX).

Entry point: `retinanet.training.trainer.train(config, train_files=..., model_dir=...)`.
"""
