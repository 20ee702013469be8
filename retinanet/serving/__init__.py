"""Serving: SavedModel export with in-graph pre/postprocessing, and batch inference.

`export.export_saved_model` writes the SavedModel (the lead's Pusher calls it),
`inference` is the command line that runs one over a folder of images, and
`visualize` draws detections with PIL.
"""
