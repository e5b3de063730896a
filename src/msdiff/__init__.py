"""msdiff: kernel-first diffusion models on MindSpore."""
__version__ = "0.1.0"
