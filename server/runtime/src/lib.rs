//! Fluxon server runtime.
