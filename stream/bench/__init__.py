"""heartrisk bench: throughput, latency, ceiling, baselines and scaling, measured in one run."""
