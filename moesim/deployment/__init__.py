"""Expert-parallel deployment: experts placed on GPUs and nodes, the traffic and step time that
placement implies, and rebalancing it (docs/model.md). Arrays in, arrays out: no scenario, no I/O
beyond reading load traces.
"""
