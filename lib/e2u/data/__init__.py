"""Data sets: records, one loader or generator per source, and refusal targets."""
