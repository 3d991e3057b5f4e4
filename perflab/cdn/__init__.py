"""Media delivery: content-hashed keys, cache headers, signed URLs, srcset, the origin, the nginx edge."""

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
from perflab.cdn.keys import is_hashed_key, object_key
from perflab.cdn.origin import OriginServer, make_origin_app
from perflab.cdn.signing import UrlSigner
from perflab.cdn.srcset import srcset

__all__ = [
    "IMMUTABLE",
    "CdnError",
    "EdgeUnavailable",
    "NginxEdge",
    "OriginServer",
    "SignatureError",
    "SignatureExpired",
    "SignatureInvalid",
    "SignatureMissing",
    "UrlSigner",
    "cache_control_for",
    "etag_for",
    "find_nginx",
    "is_hashed_key",
    "make_origin_app",
    "object_key",
    "private_cache_control",
    "srcset",
]
