"""The evaluation harness behind `python -m coda_engine.eval`: tasks, candidates, sandbox, runner, report."""
