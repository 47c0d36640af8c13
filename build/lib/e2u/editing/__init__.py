"""Knowledge editors used as unlearners: forget answers are edited into refusals."""
