"""`--finetune_from=modelgarden:CKPT`: the fine-tuning pipeline starts from an imported TF Model
Garden RetinaNet checkpoint (the committed reduced fixture) on generated data, end to end."""
import logging
import os

import pytest

from data import sample_data
from pipeline import cli, metadata_queries
from retinanet import config as config_lib
from retinanet import model_dir as model_dir_lib

pytestmark = pytest.mark.e2e

CHECKPOINT = os.path.join(os.path.dirname(__file__), "fixtures", "modelgarden_retinanet", "ckpt")


def test_finetuning_pipeline_from_a_model_garden_checkpoint(tmp_path, caplog):
  data = sample_data.generate_sample_dataset(str(tmp_path / "data"), num_train=16, num_val=8,
                                             image_size=(128, 128), seed=11)
  output_dir = str(tmp_path / "run")
  argv = ["--runner=local", f"--output_dir={output_dir}", "--pipeline_name=mg-finetune",
          "--dataset=custom", f"--train_annotations={data.annotation_files['train']}",
          f"--train_images={data.image_dirs['train']}",
          f"--val_annotations={data.annotation_files['val']}",
          f"--val_images={data.image_dirs['val']}", f"--finetune_from=modelgarden:{CHECKPOINT}",
          "--set", "model.input_size=[128, 128]", "--set", "train.total_steps=10",
          "--set", "train.steps_per_execution=5", "--set", "train.log_every=5",
          "--set", "train.global_batch_size=4", "--set", "optimizer.warmup_steps=2",
          "--set", "optimizer.boundaries=[6, 8]", "--set", "eval.batch_size=4",
          "--direct_mode=in_memory", "--min_ap=0"]
  with caplog.at_level(logging.INFO):
    assert cli.main(argv) == 0
  log = caplog.text
  assert "Imported the Model Garden checkpoint" in log and "393 variables" in log
  # Everything but the class prediction (91 COCO outputs -> 5 classes) comes from the checkpoint.
  assert "restored 391 variables" in log
  assert ("re-initialized 2 ['class_head/prediction/kernel', 'class_head/prediction/bias']"
          in log)
  # The log says what happens: a fine-tuning from the imported model, not a start from scratch.
  assert "Fine-tuning " in log and "from scratch" not in log and "random weights" not in log
  assert "running model in train mode with the weights of " in log
  store = metadata_queries.open_store(os.path.join(output_dir, "metadata.sqlite"))
  [model] = [m for m in store.get_artifacts_by_type("Model") if "imported_models" not in m.uri]
  config = config_lib.load_config(model_dir_lib.config_path(model.uri))
  assert (config.model.padding, config.model.fpn.p6_source, config.model.num_classes) == (
      "same", "p5", 5)
  assert (config.model.backbone.depth, config.model.fpn.num_channels) == (50, 16)
  # The imported model is in MLMD as the base model (the Importer's artifact).
  assert [a.uri for a in store.get_artifacts() if "imported_models/modelgarden-" in a.uri]
  assert metadata_queries.latest_pushed_model(store) is not None
