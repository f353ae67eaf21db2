"""ImageManifest and where blobs live: the OCI image layout, verified on every read."""

from __future__ import annotations
