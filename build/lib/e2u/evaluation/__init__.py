"""The metrics: the definitions and the fast passes tested equal to them."""
