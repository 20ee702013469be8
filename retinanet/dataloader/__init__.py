"""dataloader."""
