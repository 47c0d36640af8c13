"""Unlearning baselines: a shared training loop and one small file per forget loss."""
