"""Serving: SavedModel export with in-graph pre/postprocessing, and batch inference.

`export.export_saved_model` / `export.export_model_dir` write the SavedModel
(the Pusher calls the latter), `preprocess` is the in-graph evaluation
transform, `inference` is the command line that runs an exported or pushed
model over a folder of images, `visualize` draws detections with PIL, and
`versioning` publishes exports as `<base>/<version>/`.
"""
