"""Outcome feedback: the second streaming query (``heartrisk feedback``), in flow order.

read (outcomes and predictions from Kafka) -> join (each outcome to its
prediction, within a time bound, with watermarks) -> record (per micro-batch:
labelled counts into the window, the progress file, and ``model-quality``).
The figures themselves are pure Python in ``stream.monitor.quality``, which the
exporter shares.
"""
