"""Transport: QUIC adapter and TLS material."""

from .tls import CertificatePaths, ensure_certificates

__all__ = ["CertificatePaths", "ensure_certificates"]
