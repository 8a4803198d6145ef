"""Models: the word-level tokenizer and the embedded networks."""
