"""The Backend implementations (coda_lsp.backend): in this process, over HTTP, on Ray Serve replicas."""
