"""Load any causal LM (hub id, local directory, the embedded default), where things are inside it, and how text
becomes its input."""
