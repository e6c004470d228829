"""The errors that diffuse_kit raises for its callers' mistakes.

Each is a ValueError subclass and names what was wrong in `param`, so that every face can
say which field to fix (the HTTP service turns them into 4xx JSON bodies).
"""

from __future__ import annotations


class DiffuseKitError(ValueError):
    """A request that cannot be served as given. `param` names the field at fault."""

    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequestError(DiffuseKitError):
    """A field is missing, of the wrong type or out of range."""


class ModelNotFoundError(DiffuseKitError):
    """The model id names nothing that can be loaded here (offline, or no such folder/file)."""

    type = "model_not_found"

    def __init__(self, message: str, param: str = "model") -> None:
        super().__init__(message, param)
