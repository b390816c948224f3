"""The context sources, one module each; each maps a CursorQuery to Snippets, best first."""
