"""A request the server cannot answer: an HTTP status, a kind (for metrics), the field at fault."""
from __future__ import annotations


class RequestError(Exception):
    def __init__(self, status: int, kind: str, field: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.field, self.message = status, kind, field, message

    def body(self) -> dict[str, str]:
        # Both protocols answer errors as {"error": "..."}; "field" is ours, for programs.
        return {"error": self.message, "field": self.field}
