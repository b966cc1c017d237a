//! End-to-end tests of Fluxon live in this crate's `tests/` folder.
