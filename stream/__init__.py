"""heartrisk-stream: real-time heart-disease risk scoring of patient events on Kafka.

The data flow, one module per step:
source -> decode -> validate -> score -> encode -> sink.
"""

__version__ = "0.1.0"
