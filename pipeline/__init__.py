"""Pipeline assembly (`create_pipeline`) and runners."""
