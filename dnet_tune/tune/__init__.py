"""The Ray layer: search spaces, the Tune trainable, the search driver and result tables.

Only this package (and the CLI) imports Ray; the core training loop stays Ray-free.
"""
