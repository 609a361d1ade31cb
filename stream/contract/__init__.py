"""What heartrisk promises the outside world: event fields, error codes, Avro schemas, the registry.

``schema`` reads ``schemas/`` (the event contract), ``codes`` lists the
dead-letter codes, ``avro`` frames and parses the Confluent wire format,
``registry`` is the schema-registry client and ``writer_schemas`` settles each
writer schema id. It may import ``stream.config`` and ``stream.errors`` only.
"""
