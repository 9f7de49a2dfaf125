"""The error type the store raises and the server turns into an HTTP error response."""

from __future__ import annotations


class StorageError(Exception):
    """A service error: HTTP status, ``x-ms-error-code`` and a message.

    ``headers`` carries extra response headers (e.g. ``Content-Range`` on 416).
    """

    def __init__(self, status: int, code: str, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message or code
        self.headers = dict(headers or {})


# Messages as the live service words them (shortened where the recordings show no text).
MESSAGES = {
    "AuthenticationFailed": "Server failed to authenticate the request. Make sure the value of Authorization "
    "header is formed correctly including the signature.",
    "BlobNotFound": "The specified blob does not exist.",
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
    "ContainerAlreadyExists": "The specified container already exists.",
    "ContainerNotFound": "The specified container does not exist.",
    "DirectoryNotEmpty": "The recursive query parameter value must be true to delete a non-empty directory.",
    "FilesystemAlreadyExists": "The specified filesystem already exists.",
    "FilesystemNotFound": "The specified filesystem does not exist.",
    "InvalidFlushPosition": "The uploaded data is not contiguous or the position query parameter value is not "
    "equal to the length of the file after appending the uploaded data.",
    "InvalidRange": "The range specified is invalid for the current size of the resource.",
    "LeaseAlreadyPresent": "There is already a lease present.",
    "LeaseIdMismatchWithLeaseOperation": "The lease ID specified did not match the lease ID for the blob.",
    "LeaseIdMismatch": "The lease ID specified did not match the lease ID for the resource.",
    "LeaseIdMismatchWithBlobOperation": "The lease ID specified did not match the lease ID for the blob.",
    "LeaseIdMissing": "There is currently a lease on the resource and no lease ID was specified in the request.",
    "LeaseIsBreakingAndCannotBeAcquired": "There is already a breaking lease and it cannot be acquired.",
    "LeaseIsBrokenAndCannotBeRenewed": "The lease ID matched, but the lease has been broken explicitly and "
    "cannot be renewed.",
    "LeaseNotPresent": "There is currently no lease on the resource.",
    "LeaseNotPresentWithBlobOperation": "There is currently no lease on the blob.",
    "LeaseNotPresentWithLeaseOperation": "There is currently no lease on the blob.",
    "PathAlreadyExists": "The specified path already exists.",
    "PathConflict": "The specified path, or an element of the path, exists and its resource type is invalid "
    "for this operation.",
    "PathNotFound": "The specified path does not exist.",
    "RenameDestinationParentPathNotFound": "The parent directory of the destination path does not exist.",
    "SourcePathNotFound": "The source path for a rename operation does not exist.",
    "InvalidDestinationPath": "The specified path, or an element of the path, cannot be renamed into itself.",
    "InvalidQueryParameterValue": "Value for one of the query parameters specified in the request URI is invalid.",
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "UnsupportedOperation": "The emulator does not support this operation.",
    "InternalError": "Server encountered an internal error. Please try again after some time.",
    "ServerBusy": "Operations per second is over the account limit.",
}


def error(status: int, code: str, message: str | None = None, **headers: str) -> StorageError:
    """Build a StorageError with the service's message for ``code`` unless one is given."""
    return StorageError(status, code, message or MESSAGES.get(code, code), headers or None)
