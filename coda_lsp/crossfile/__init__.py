"""Cross-file context: a workspace index, context sources and the prompt part that goes before the prefix."""
