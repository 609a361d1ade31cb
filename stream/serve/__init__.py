"""``heartrisk serve``: one patient's prediction over HTTP, the same answer the stream gives.

``predict`` turns request bytes into the stream's prediction record or its
error code (the contract checked by ``stream.contract.check``, the model by
``stream.model.linear``, no Spark); ``auth`` checks bearer tokens; ``limits``
rate-limits clients; ``metrics`` counts for Prometheus; ``app`` wires the
routes. It may import config, errors, spec, contract, model and
``stream.pipeline.columns``, and never pyspark.
"""
