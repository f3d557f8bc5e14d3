"""moesim's own fuzzer (issue 17): hostile-but-plausible inputs against every command, checked
against the guarantees of docs/guarantees.md.

``make test`` runs a small fixed budget (deterministic: the ``ci`` profile); ``make fuzz`` runs
:data:`budget.TOTAL` cases (``MOESIM_FUZZ_EXAMPLES``, 10,000 by default there), randomly, and
writes every violation to ``MOESIM_FUZZ_LOG``.
"""
