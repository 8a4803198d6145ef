"""Backends: models that play the loop's roles (ShapesWorld oracle now; the embedded
model, chat models and diffusers pipelines plug in through the same protocols)."""
