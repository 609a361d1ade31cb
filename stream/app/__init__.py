"""The commands behind ``heartrisk``: each module holds one command's work and its display.

``scorer`` starts the streaming query and ``lifecycle`` runs it as a process
(signals, graceful stop); ``run``, ``produce``, ``tail``, ``batch``, ``services``
(the local broker and registry) and ``modelcmd`` (data and training) do what
their names say; ``checkpoint`` guards a checkpoint against another input. This
is the top layer: it may import every other package, and only ``stream.cli``
imports it.
"""
