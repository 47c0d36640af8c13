"""The paper's two recipes (Li et al. 2025, section 4): self-improvement (the model writes its own refusal
targets by in-context learning) and query merging (several forget queries in one edit request). Neither
procedure is published; what is here is our reconstruction, and each file says where."""
