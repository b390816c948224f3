"""The one error type for bad input: its message is a single line that the CLI prints as is."""


class TrainingError(Exception):
    """Bad input (config, data, checkpoint, tokenizer) found before any compute is spent, or a stopped run."""
