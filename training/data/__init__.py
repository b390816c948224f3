"""Data: packed token shards, SFT and infill examples, and batches as a pure function of (seed, step)."""
