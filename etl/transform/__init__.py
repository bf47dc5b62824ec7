"""Transformations from warehouse rows to WebEngage payload values."""
