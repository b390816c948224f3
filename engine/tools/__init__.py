"""Tools built on the engine (benchmarks, the HumanEval-infilling evaluation); no runtime module imports them."""
