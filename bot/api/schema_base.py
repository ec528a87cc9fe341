"""The API's one error type and the shape checks every request parser shares."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer in the API's one error shape: {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


def object_of(data: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid(f"{where} must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise invalid(f"{where}: unknown field(s) {', '.join(unknown)}")
    return data
