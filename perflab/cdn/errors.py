"""Typed errors of media delivery."""

from __future__ import annotations

from perflab.errors import PerflabError, ServiceUnavailable


class CdnError(PerflabError):
    """Base of every error the CDN layer raises on purpose."""


class SignatureError(CdnError):
    """A signed URL failed verification; the subclass says why (the HTTP answer is 403 either way)."""


class SignatureMissing(SignatureError):
    def __init__(self) -> None:
        super().__init__("the URL carries no exp/sig parameters")


class SignatureInvalid(SignatureError):
    def __init__(self) -> None:
        super().__init__("the URL signature does not match (tampered, or signed with another key)")


class SignatureExpired(SignatureError):
    def __init__(self, expired_at: int, now: int) -> None:
        self.expired_at = expired_at
        super().__init__(f"the signed URL expired {now - expired_at} s ago")


class EdgeUnavailable(ServiceUnavailable):
    """nginx is not installed, or did not start."""
