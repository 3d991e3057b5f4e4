"""Media delivery: cache headers, signed URLs, srcset, the origin, the nginx edge (over the storage's
content-hashed keys, `perflab.images.keys`)."""

from perflab.cdn.edge import NginxEdge, find_nginx
from perflab.cdn.errors import (
    CdnError,
    EdgeUnavailable,
    SignatureError,
    SignatureExpired,
    SignatureInvalid,
    SignatureMissing,
)
from perflab.cdn.headers import IMMUTABLE, cache_control_for, etag_for, private_cache_control
from perflab.cdn.origin import OriginServer, make_origin_app
from perflab.cdn.signing import UrlSigner, stable_expiry
from perflab.cdn.srcset import srcset
from perflab.cdn.urls import MediaUrls, UrlMinter, media_urls

__all__ = [
    "IMMUTABLE",
    "CdnError",
    "EdgeUnavailable",
    "MediaUrls",
    "NginxEdge",
    "OriginServer",
    "SignatureError",
    "SignatureExpired",
    "SignatureInvalid",
    "SignatureMissing",
    "UrlMinter",
    "UrlSigner",
    "cache_control_for",
    "etag_for",
    "find_nginx",
    "make_origin_app",
    "media_urls",
    "private_cache_control",
    "srcset",
    "stable_expiry",
]
