"""msdiff benchmark suite: op and net timings on MindSpore, side by side with PyTorch diffusers when importable.

Run `python -m benchmarks --help`. Importing this package imports neither MindSpore nor torch, so
the reference side (`benchmarks.reference`) also runs in an interpreter that only has torch.
"""
