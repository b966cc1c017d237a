//! Differences between two model snapshots, as SQL statements in either dialect.
//!
//! Columns are matched by protobuf field number (by name for the implicit id and join
//! tables), so a renamed field keeps its data. Renames, added and dropped columns and index
//! changes are made in place. A change of a column's type or constraints, or of a table's
//! constraints, rebuilds the table:
//! - SQLite, by its documented procedure: create the new table, copy the rows, drop the old
//!   table, rename the new one, recreate the indexes (foreign keys refer to tables by name,
//!   so other tables' keys follow).
//! - PostgreSQL: keep the rows in a temporary table, drop the table (and, with it, other
//!   tables' foreign keys to it), create it anew under its own name, copy the rows back
//!   (casting a changed type), move its identity past the copied keys, recreate the indexes,
//!   and at the end of the plan put back the foreign keys the drop took. A migrated table
//!   then has the constraint and index names of a freshly created one.

use crate::error::{Error, Result};
use crate::schema::{quote_ident, Dialect, ModelMeta};
use crate::schema::{ColumnDef, TableDef};

/// The statements turning one schema into another, with a description of each change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// SQL statements, each ending with `;`.
    pub statements: Vec<String>,
    /// One human-readable line per change.
    pub changes: Vec<String>,
    /// The subset of `changes` that lose data (dropped tables and columns).
    pub destructive: Vec<String>,
}

impl Plan {
    /// No change at all.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The statements joined, one per line.
    pub fn sql(&self) -> String {
        let mut s = String::new();
        for st in &self.statements {
            s.push_str(st);
            s.push('\n');
        }
        s
    }
}

/// The plan turning `old` models into `new` models.
pub fn plan(old: &[ModelMeta], new: &[ModelMeta]) -> Result<Plan> {
    plan_in(old, new, Dialect::Sqlite)
}

/// [`plan`] in `dialect` (the module documentation says how each dialect rebuilds a table).
pub fn plan_in(old: &[ModelMeta], new: &[ModelMeta], dialect: Dialect) -> Result<Plan> {
    let old_tables = TableDef::from_models_in(old, dialect)?;
    let new_tables = TableDef::from_models_in(new, dialect)?;
    let mut p = Plan::default();
    // Which tables of `new_tables` this plan creates (anew or by a rebuild), and which it
    // rebuilds, by position.
    let mut created = vec![false; new_tables.len()];
    let mut rebuilt = Vec::new();
    for (pos, t) in new_tables.iter().enumerate() {
        match old_tables.iter().find(|o| o.name == t.name) {
            None => {
                p.statements
                    .push(format!("{};", t.create_table_as(&t.name)));
                p.statements
                    .extend(t.indexes.iter().map(|i| format!("{};", i.sql)));
                p.changes.push(format!("create table {}", t.name));
                created[pos] = true;
            }
            Some(o) => {
                if alter(o, t, dialect, &mut p) {
                    created[pos] = true;
                    rebuilt.push(pos);
                }
            }
        }
    }
    if dialect == Dialect::Postgres {
        restore_foreign_keys(&new_tables, &created, &rebuilt, &mut p);
    }
    // PostgreSQL checks foreign keys on DROP: a referencing table (a join table, a child)
    // goes before the table it refers to, so the old tables are dropped in reverse order.
    let dropped: Vec<&TableDef> = match dialect {
        Dialect::Postgres => old_tables.iter().rev().collect(),
        _ => old_tables.iter().collect(),
    };
    for o in dropped {
        if !new_tables.iter().any(|t| t.name == o.name) {
            p.statements
                .push(format!("DROP TABLE {};", quote_ident(&o.name)));
            let c = format!("drop table {}", o.name);
            p.destructive.push(c.clone());
            p.changes.push(c);
        }
    }
    Ok(p)
}

/// `plan`, refusing destructive changes unless `allow_destructive`.
pub(crate) fn checked_plan(
    old: &[ModelMeta],
    new: &[ModelMeta],
    allow_destructive: bool,
) -> Result<Plan> {
    let p = plan(old, new)?;
    if !allow_destructive && !p.destructive.is_empty() {
        return Err(Error::Migration(format!(
            "destructive changes need the explicit flag: {}",
            p.destructive.join(", ")
        )));
    }
    Ok(p)
}

fn matching<'o>(old: &'o TableDef, c: &ColumnDef) -> Option<&'o ColumnDef> {
    if c.field_number != 0 {
        if let Some(o) = old
            .columns
            .iter()
            .find(|o| o.field_number == c.field_number)
        {
            return Some(o);
        }
    }
    old.columns
        .iter()
        .find(|o| o.name == c.name && (o.field_number == 0 || c.field_number == 0))
}

fn renamed(text: &str, renames: &[(&str, &str)]) -> String {
    let mut s = text.to_owned();
    for (from, to) in renames {
        s = s.replace(&quote_ident(from), &quote_ident(to));
    }
    s
}

/// A new column SQLite can add in place with ALTER TABLE ADD COLUMN.
fn simple_add(c: &ColumnDef, t: &TableDef) -> bool {
    let d = &c.definition;
    let nullable_or_default = !d.contains(" NOT NULL") || d.contains(" DEFAULT ");
    let q = quote_ident(&c.name);
    let in_constraint = t.constraints.iter().any(|k| k.contains(&q));
    nullable_or_default && !d.contains(" PRIMARY KEY") && !d.contains(" UNIQUE") && !in_constraint
}

/// Alters `old` into `new`; true when the table was rebuilt.
fn alter(old: &TableDef, new: &TableDef, dialect: Dialect, p: &mut Plan) -> bool {
    let table = &new.name;
    let mut renames = Vec::new();
    let mut added = Vec::new();
    let mut changed = false;
    for c in &new.columns {
        match matching(old, c) {
            Some(o) => {
                if o.name != c.name {
                    renames.push((o.name.as_str(), c.name.as_str()));
                    p.changes
                        .push(format!("rename column {table}.{} to {}", o.name, c.name));
                }
                if renamed(&o.definition, &[(&o.name, &c.name)]) != c.definition {
                    changed = true;
                    p.changes.push(format!("alter column {table}.{}", c.name));
                }
            }
            None => {
                added.push(c);
                p.changes.push(format!("add column {table}.{}", c.name));
            }
        }
    }
    let mut dropped = false;
    for o in &old.columns {
        if !new
            .columns
            .iter()
            .any(|c| matching(old, c).is_some_and(|m| m.name == o.name))
        {
            dropped = true;
            let c = format!("drop column {table}.{}", o.name);
            p.destructive.push(c.clone());
            p.changes.push(c);
        }
    }
    let old_constraints: Vec<String> = old
        .constraints
        .iter()
        .map(|k| renamed(k, &renames))
        .collect();
    let constraints_changed = old_constraints != new.constraints;
    if constraints_changed {
        p.changes.push(format!("change constraints of {table}"));
    }
    let in_place =
        !changed && !dropped && !constraints_changed && added.iter().all(|c| simple_add(c, new));
    if in_place {
        let q = quote_ident(table);
        for (from, to) in &renames {
            p.statements.push(format!(
                "ALTER TABLE {q} RENAME COLUMN {} TO {};",
                quote_ident(from),
                quote_ident(to)
            ));
        }
        for c in &added {
            p.statements
                .push(format!("ALTER TABLE {q} ADD COLUMN {};", c.definition));
        }
        index_changes(old, new, !renames.is_empty(), p);
        false
    } else if changed || constraints_changed || dialect != Dialect::Postgres {
        match dialect {
            Dialect::Postgres => rebuild_postgres(old, new, p),
            _ => rebuild(old, new, p),
        }
        true
    } else {
        alter_in_place(old, new, &renames, p);
        false
    }
}

/// PostgreSQL: renames, dropped columns and added columns (a NOT NULL one filled for existing
/// rows first) as ALTER TABLE statements, then the index changes.
fn alter_in_place(old: &TableDef, new: &TableDef, renames: &[(&str, &str)], p: &mut Plan) {
    let q = quote_ident(&new.name);
    for (from, to) in renames {
        p.statements.push(format!(
            "ALTER TABLE {q} RENAME COLUMN {} TO {};",
            quote_ident(from),
            quote_ident(to)
        ));
    }
    for o in &old.columns {
        let kept = new
            .columns
            .iter()
            .any(|c| matching(old, c).is_some_and(|m| m.name == o.name));
        if !kept {
            p.statements.push(format!(
                "ALTER TABLE {q} DROP COLUMN {};",
                quote_ident(&o.name)
            ));
        }
    }
    for c in &new.columns {
        if matching(old, c).is_some() {
            continue;
        }
        if simple_add(c, new) || !c.definition.contains(" NOT NULL") {
            p.statements
                .push(format!("ALTER TABLE {q} ADD COLUMN {};", c.definition));
            continue;
        }
        // NOT NULL without a default: add it nullable, fill existing rows, then constrain.
        let col = quote_ident(&c.name);
        let nullable = c.definition.replacen(" NOT NULL", "", 1);
        p.statements
            .push(format!("ALTER TABLE {q} ADD COLUMN {nullable};"));
        p.statements
            .push(format!("UPDATE {q} SET {col} = {};", c.fill));
        p.statements
            .push(format!("ALTER TABLE {q} ALTER COLUMN {col} SET NOT NULL;"));
    }
    index_changes(old, new, !renames.is_empty(), p);
}

fn index_changes(old: &TableDef, new: &TableDef, force_recreate: bool, p: &mut Plan) {
    for o in &old.indexes {
        let keep = !force_recreate && new.indexes.iter().any(|i| i == o);
        if !keep {
            p.statements
                .push(format!("DROP INDEX IF EXISTS {};", quote_ident(&o.name)));
            if !new.indexes.iter().any(|i| i.name == o.name) {
                p.changes.push(format!("drop index {}", o.name));
            }
        }
    }
    for i in &new.indexes {
        let existed = old.indexes.iter().any(|o| o == i);
        if force_recreate || !existed {
            p.statements.push(format!("{};", i.sql));
            if !existed {
                p.changes.push(format!("create index {}", i.name));
            }
        }
    }
}

fn rebuild(old: &TableDef, new: &TableDef, p: &mut Plan) {
    let tmp = format!("_fluxon_new_{}", new.name);
    // SQLite converts a value by the column's type affinity where it can and keeps it
    // otherwise: no cast.
    let (targets, sources) = copy_columns(old, new, |_, e| e);
    p.statements.push(format!("{};", new.create_table_as(&tmp)));
    p.statements.push(format!(
        "INSERT INTO {} ({}) SELECT {} FROM {};",
        quote_ident(&tmp),
        targets.join(", "),
        sources.join(", "),
        quote_ident(&old.name)
    ));
    p.statements
        .push(format!("DROP TABLE {};", quote_ident(&old.name)));
    p.statements.push(format!(
        "ALTER TABLE {} RENAME TO {};",
        quote_ident(&tmp),
        quote_ident(&new.name)
    ));
    p.statements
        .extend(new.indexes.iter().map(|i| format!("{};", i.sql)));
    p.changes.push(format!("rebuild table {}", new.name));
}

/// The expressions filling each column of `new` from the rows of `old` during a rebuild
/// (`cast` wraps a column whose type changed), as (targets, sources).
fn copy_columns(
    old: &TableDef,
    new: &TableDef,
    cast: impl Fn(&ColumnDef, String) -> String,
) -> (Vec<String>, Vec<String>) {
    let mut targets = Vec::new();
    let mut sources = Vec::new();
    for c in &new.columns {
        targets.push(quote_ident(&c.name));
        sources.push(match matching(old, c) {
            Some(o) => {
                let mut e = quote_ident(&o.name);
                if o.sql_type != c.sql_type {
                    e = cast(c, e);
                }
                if c.definition.contains(" NOT NULL") {
                    e = format!("COALESCE({e}, {})", c.fill);
                }
                e
            }
            None => c.fill.clone(),
        });
    }
    (targets, sources)
}

/// PostgreSQL's rebuild of `old` as `new` (see the module documentation). Other tables'
/// foreign keys to it are put back by [`restore_foreign_keys`].
fn rebuild_postgres(old: &TableDef, new: &TableDef, p: &mut Plan) {
    let table = quote_ident(&new.name);
    let kept = quote_ident(&format!("_fluxon_old_{}", new.name));
    let (targets, sources) = copy_columns(old, new, |c, e| format!("CAST({e} AS {})", c.sql_type));
    p.statements.push(format!(
        "CREATE TEMPORARY TABLE {kept} AS SELECT * FROM {};",
        quote_ident(&old.name)
    ));
    p.statements
        .push(format!("DROP TABLE {} CASCADE;", quote_ident(&old.name)));
    p.statements
        .push(format!("{};", new.create_table_as(&new.name)));
    p.statements.push(format!(
        "INSERT INTO {table} ({}) SELECT {} FROM {kept};",
        targets.join(", "),
        sources.join(", ")
    ));
    for c in &new.columns {
        if c.definition.contains(" AS IDENTITY") {
            let col = quote_ident(&c.name);
            p.statements.push(format!(
                "SELECT setval(pg_get_serial_sequence('{}', '{}'), COALESCE(MAX({col}), 0) + 1, false) FROM {table};",
                table.replace('\'', "''"),
                c.name.replace('\'', "''"),
            ));
        }
    }
    p.statements.push(format!("DROP TABLE {kept};"));
    p.statements
        .extend(new.indexes.iter().map(|i| format!("{};", i.sql)));
    p.changes.push(format!("rebuild table {}", new.name));
}

/// PostgreSQL: the foreign keys to a rebuilt table that its `DROP ... CASCADE` took, added
/// again once every table has its new columns. A key survives only where its table was
/// created at or after the rebuilt table's position in the plan (it then refers to the new
/// table); every other one is added back.
fn restore_foreign_keys(tables: &[TableDef], created: &[bool], rebuilt: &[usize], p: &mut Plan) {
    for (pos, t) in tables.iter().enumerate() {
        for k in &t.constraints {
            let lost = rebuilt.iter().any(|&r| {
                let target = format!("REFERENCES {} (", quote_ident(&tables[r].name));
                k.starts_with("FOREIGN KEY") && k.contains(&target) && !(created[pos] && pos >= r)
            });
            if lost {
                p.statements
                    .push(format!("ALTER TABLE {} ADD {k};", quote_ident(&t.name)));
            }
        }
    }
}
