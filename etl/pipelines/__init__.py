"""One module per entity; each exposes ``run(settings, ...) -> summary dict``."""
