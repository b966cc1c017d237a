//! Fluxon database layer.
