"""The data path, one module per step: source -> decode -> validate -> score -> encode -> sink.

``columns`` names every column the steps share; the steps import it (and
``stream.contract``, ``stream.config``, ``stream.errors``) but never each other.
``build`` wires them in flow order for the streaming query (JSON or Avro),
``score-batch``, the bench and the tests; ``trigger`` parses the trigger setting. Nothing here imports ``stream.app``,
``stream.monitor``, ``stream.local`` or the CLI.
"""
