"""Knowledge editors used as unlearners: forget answers are edited into refusals."""

from .adaptor import load_adaptor  # noqa: E402,F401  (a saved GRACE codebook or WISE side memory, attached again)
