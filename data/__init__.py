"""Dataset reading, COCO -> TFRecord conversion, and the built-in sample data."""
