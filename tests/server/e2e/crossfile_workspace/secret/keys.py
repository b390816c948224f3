def api_key() -> str:
    return "ignored by .gitignore: never indexed"
