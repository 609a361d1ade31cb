"""Watching the scorer: its progress file, the Spark listener that writes it, the exporter that reads it.

``progress`` (pure Python) reads and writes the progress file; ``observe`` holds
the per-batch aggregates computed inside the query; ``listener`` runs in the
scorer's driver; ``exporter`` is the sidecar that pushes to a Pushgateway. The
exporter imports no pyspark: it uses ``progress`` only. The package may import
``stream.pipeline.columns``, ``stream.contract`` and ``stream.config``.
"""
