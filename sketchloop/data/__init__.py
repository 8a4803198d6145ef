"""Training data: the paper's staged-data pipelines, their teachers, and the dataset format."""
