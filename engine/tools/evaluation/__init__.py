"""The evaluation harness behind `python -m coda_engine.tools.eval`: tasks, candidates, sandbox, runner, report."""
