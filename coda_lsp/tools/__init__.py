"""Tools built on the servers (latency and context benchmarks, the demo, the cluster check); no runtime module
imports them."""
