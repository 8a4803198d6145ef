"""Training: sequences from the staged datasets, and the (distributed, resumable) trainer."""
