"""coda-lsp: code completion in the editor from a CoDA masked-diffusion model, served over LSP."""

__version__ = "0.1.0"
