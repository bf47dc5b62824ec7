"""Transformations from warehouse rows to WebEngage payload values.

Pure: frames and the typed mappings of :mod:`etl.mappings` in, payloads and problems (rejects, drops, counts)
out. Nothing here reads files, settings or the environment, or touches the state store or the API.
"""
