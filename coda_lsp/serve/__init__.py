"""`coda-lsp serve`: the HTTP infill server (llama-server's /infill, OpenAI's /v1/completions), batched across clients."""
