"""The risk model: the Cleveland data set, training, evaluation and the versioned artifact.

``dataset`` reads the data, ``train`` fits and saves a version, ``evaluation``
holds the metrics, ``artifact`` loads and verifies a saved version. It may
import ``stream.contract`` (the event fields), ``stream.config`` and
``stream.errors``; never the pipeline, the app or the CLI.
"""
