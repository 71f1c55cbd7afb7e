//! S3-compatible object storage sink (work in progress: see the module once it lands).
