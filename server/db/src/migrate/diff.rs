//! Differences between two model snapshots, as SQLite statements.
//!
//! Columns are matched by protobuf field number (by name for the implicit id and join
//! tables), so a renamed field keeps its data. Changes SQLite cannot make in place use its
//! documented table-rebuild procedure: create the new table, copy the rows, drop the old
//! table, rename the new one, recreate the indexes.

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

/// [`plan`] in `dialect`. PostgreSQL alters tables in place (rename, add and drop columns,
/// indexes); a change that SQLite makes by rebuilding the table (a column's type or
/// constraints, a table's constraints) is refused there with an error naming it.
pub fn plan_in(old: &[ModelMeta], new: &[ModelMeta], dialect: Dialect) -> Result<Plan> {
    let old_tables = TableDef::from_models_in(old, dialect)?;
    let new_tables = TableDef::from_models_in(new, dialect)?;
    let mut p = Plan::default();
    for t in &new_tables {
        match old_tables.iter().find(|o| o.name == t.name) {
            None => {
                p.statements
                    .push(format!("{};", t.create_table_as(&t.name)));
                p.statements
                    .extend(t.indexes.iter().map(|i| format!("{};", i.sql)));
                p.changes.push(format!("create table {}", t.name));
            }
            Some(o) => alter(o, t, dialect, &mut p)?,
        }
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

fn alter(old: &TableDef, new: &TableDef, dialect: Dialect, p: &mut Plan) -> Result<()> {
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
    } else if dialect == Dialect::Postgres {
        alter_in_place(old, new, &renames, changed || constraints_changed, p)?;
    } else {
        rebuild(old, new, p);
    }
    Ok(())
}

/// PostgreSQL: renames, dropped columns and added columns (a NOT NULL one filled for existing
/// rows first) as ALTER TABLE statements, then the index changes.
fn alter_in_place(
    old: &TableDef,
    new: &TableDef,
    renames: &[(&str, &str)],
    redefined: bool,
    p: &mut Plan,
) -> Result<()> {
    let table = &new.name;
    if redefined {
        return Err(Error::Migration(format!(
            "table {table}: a change of a column's type or constraints, or of the table's \
             constraints, is not migrated on PostgreSQL yet (SQLite rebuilds the table)"
        )));
    }
    let q = quote_ident(table);
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
    Ok(())
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
    let mut targets = Vec::new();
    let mut sources = Vec::new();
    for c in &new.columns {
        targets.push(quote_ident(&c.name));
        sources.push(match matching(old, c) {
            Some(o) if c.definition.contains(" NOT NULL") => {
                format!("COALESCE({}, {})", quote_ident(&o.name), c.fill)
            }
            Some(o) => quote_ident(&o.name),
            None => c.fill.clone(),
        });
    }
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
