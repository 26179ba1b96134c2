"""Kubernetes reporting: netagent's findings as node conditions and events on its Node.

``conditions`` is pure (what to send, from the agent's state); ``reporter`` is the agent's
consumer that sends it, through ``sources.kubeapi``.
"""
