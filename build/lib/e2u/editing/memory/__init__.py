"""The memory-based editors (GRACE, WISE) and what their memories share: the adaptor hook, its rows, site and routing."""
