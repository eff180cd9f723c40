"""taskfit: from a pretrained model and your own data to a fine-tuned, measured model."""

__version__ = "0.1.0"
