"""ApiError and the two error bodies: llama-server's for native routes, OpenAI's for /v1 routes."""

from __future__ import annotations

from typing import Any

# llama-server's error types by status (server-common.cpp `format_error_response`); OpenAI's /v1 bodies use them too.
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               500: "server_error", 501: "not_supported_error", 503: "unavailable_error"}


class ApiError(Exception):
    """A request the server answers with an error: one line of `message`, the status, and the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.status, "server_error")


def native_body(error: ApiError) -> dict[str, Any]:
    """llama-server's `{"error":{"code","message","type"}}`."""
    return {"error": {"code": error.status, "message": error.message, "type": error.type}}


def openai_body(error: ApiError) -> dict[str, Any]:
    """OpenAI's `{"error":{"message","type","param","code"}}` (code: a string or null in OpenAI's API)."""
    code = "invalid_api_key" if error.status == 401 else None
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": code}}


def bad_field(name: str, problem: str) -> ApiError:
    return ApiError(400, f"{name} {problem}", param=name)
