//! Fluxon client SDK.
