"""The lab: a Kubernetes-like node built from network namespaces on the real kernel.

Used by the kernel tests, the benchmarks and the README demo through ``scripts/lab``.
Everything the lab makes is named ``nalab-<lab>-*`` so ``scripts/lab down`` (or a test's
teardown) removes exactly what it made and nothing else.
"""
