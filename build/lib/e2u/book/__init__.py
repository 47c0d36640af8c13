"""What the book's chapters show, computed from result files only: tables, figures, claims and their verdicts."""
