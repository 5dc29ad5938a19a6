"""dho: a harness reproducing "Simple Semi-supervised Knowledge Distillation from
Vision-Language Models via Dual-Head Optimization" (DHO, arXiv 2505.07675).

The package is importable without Snakemake; every workflow rule calls its CLI
(``python -m dho ...``).
"""

__version__ = "0.1.0"
