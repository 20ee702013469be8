"""COCO box evaluation (pycocotools) of detections in original image pixels."""
