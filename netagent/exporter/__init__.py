"""Prometheus exposition of what the agent last observed (``netagent run``; ``curl :9465/metrics``).

The only package that imports ``prometheus_client``. A scrape never reads the system: the
collector turns the observations the agent already holds into fresh metric families, one
small module per source (``neighbours.py``, ...), plus the agent's own series (check status,
source up, collection duration, build info). A source whose last collection failed leaves its
metrics out and shows ``netagent_source_up{source} 0``; a scrape never fails. No series is
per neighbour, per connection or per pod: label values are families, states, devices,
resolvers and check ids, all bounded.
"""
