"""Batching by count and bytes, and sending with checkpoints after acceptance."""
