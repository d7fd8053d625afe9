"""The report stage's library side: summary numbers, verdicts, figures, documents, and the
cross-experiment comparison."""
