"""artlab: explore how convolutional networks see art."""

__version__ = "0.1.0"
