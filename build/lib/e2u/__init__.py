"""e2u: knowledge editors as LLM unlearning baselines (Li et al., arXiv 2505.19855), reproduced."""

__version__ = "0.1.0"
