"""`netagent fleet`: the odd node and the fleet's headroom, read from Prometheus."""
