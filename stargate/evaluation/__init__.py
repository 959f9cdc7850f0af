"""Evaluation arithmetic shared by the judge, summary and report: win-rate variants, verdict outcomes,
bootstrap intervals, the paper's published values and task labels (package data, with their source)."""
