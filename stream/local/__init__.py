"""Local services for development, tests and the bench: the KRaft broker, the schema registry, the JVM jars.

``jvm`` resolves the Maven jars (``make setup``), ``processes`` starts and stops
process groups, ``broker`` and ``registry_server`` run Kafka and Apicurio on
loopback, ``topics`` creates and describes topics on any broker. It may import
``stream.config`` and ``stream.errors`` only.
"""
