"""Scoring, metrics and reports."""
