//! Schema versions (in progress).
