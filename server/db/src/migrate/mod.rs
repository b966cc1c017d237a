//! Schema versions: the original's `saveschema` / `updateschema N`.
//!
//! [`SchemaDir::save`] diffs the models compiled into the server against the latest saved
//! snapshot and writes the next numbered version (forward SQL, reverse SQL, snapshot JSON;
//! deterministic output). [`apply`] moves a database to any saved version, forward or back,
//! one transaction per version, recording each in the `_fluxon_schema_history` table with
//! a checksum of its normalized SQL. [`check`] / [`ensure`] let the server refuse a database
//! whose version does not match its models.

mod apply;
mod diff;
mod dir;

pub use apply::{
    apply, check, checksum, current_version, ensure, normalize_sql, status, Applied, Status,
};
pub use diff::{plan, plan_in, Plan};
pub use dir::{SaveOptions, SchemaDir, Version};
