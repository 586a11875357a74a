"""What a loaded model answers: scores, ranges, bands, factors, unknowns, as columns."""
