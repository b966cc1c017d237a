//! Deterministic DDL from model metadata, in SQLite's dialect or PostgreSQL's.

use std::fmt::Write as _;

use crate::validate::validate;
use crate::{find_model, ColumnMeta, Dialect, FieldType, ModelMeta, SchemaError, Value};

/// Quotes an SQL identifier (`"name"`, with embedded quotes doubled).
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// An SQL literal in `dialect` for a value of the schema (defaults): never used for request
/// values.
fn literal(v: &Value, dialect: Dialect) -> String {
    match v {
        Value::Blob(b) if dialect == Dialect::Postgres => {
            let mut s = String::from("'\\x");
            for byte in b {
                let _ = write!(s, "{byte:02X}");
            }
            s.push_str("'::bytea");
            s
        }
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) if r.is_finite() => format!("{r:?}"),
        Value::Real(_) => "NULL".to_owned(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Blob(b) => {
            let mut s = String::from("X'");
            for byte in b {
                let _ = write!(s, "{byte:02X}");
            }
            s.push('\'');
            s
        }
    }
}

/// One column of a [`TableDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Protobuf field number (0 for the implicit id; 1 and 2 for join-table columns).
    pub field_number: u32,
    /// The column's type as written in the definition (`BIGINT`, `TEXT`, ...).
    pub sql_type: &'static str,
    /// The full column definition as written inside CREATE TABLE.
    pub definition: String,
    /// The value given to existing rows when the column is added by a table rebuild.
    pub fill: String,
}

/// One index of a [`TableDef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// The CREATE INDEX statement (without the trailing semicolon).
    pub sql: String,
}

/// A table as it is created: the unit the DDL generator and the schema differ work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    /// Table name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnDef>,
    /// Table constraints (composite primary key, foreign keys).
    pub constraints: Vec<String>,
    /// Indexes.
    pub indexes: Vec<IndexDef>,
}

impl TableDef {
    /// The CREATE TABLE statement for this table under `name` (without semicolon).
    pub fn create_table_as(&self, name: &str) -> String {
        let mut sql = format!("CREATE TABLE {} (\n", quote_ident(name));
        let parts: Vec<&str> = self
            .columns
            .iter()
            .map(|c| c.definition.as_str())
            .chain(self.constraints.iter().map(String::as_str))
            .collect();
        for (i, part) in parts.iter().enumerate() {
            sql.push_str("    ");
            sql.push_str(part);
            if i + 1 < parts.len() {
                sql.push(',');
            }
            sql.push('\n');
        }
        sql.push(')');
        sql
    }

    /// CREATE TABLE followed by CREATE INDEX statements, each ending with `;\n`.
    pub fn create_sql(&self) -> String {
        let mut sql = self.create_table_as(&self.name);
        sql.push_str(";\n");
        for idx in &self.indexes {
            sql.push_str(&idx.sql);
            sql.push_str(";\n");
        }
        sql
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Derives the SQLite tables (models then their join tables) of validated, normalized
    /// models.
    pub fn from_models(models: &[ModelMeta]) -> Result<Vec<Self>, SchemaError> {
        Self::from_models_in(models, Dialect::Sqlite)
    }

    /// Derives the tables (models then their join tables) of validated, normalized models,
    /// written in `dialect`.
    pub fn from_models_in(
        models: &[ModelMeta],
        dialect: Dialect,
    ) -> Result<Vec<Self>, SchemaError> {
        let models = validate(models)?;
        let mut tables = Vec::new();
        for m in &models {
            tables.push(model_table(m, &models, dialect));
        }
        for m in &models {
            for rel in m.many_to_many.iter().filter(|r| r.through.is_none()) {
                if let Some(target) = find_model(&models, &rel.target) {
                    tables.push(join_table(m, &rel.name, target, dialect));
                }
            }
        }
        Ok(tables)
    }
}

fn zero_literal(ty: FieldType, dialect: Dialect) -> &'static str {
    match ty {
        FieldType::Integer | FieldType::Bool | FieldType::Timestamp => "0",
        FieldType::Real => "0.0",
        FieldType::Text => "''",
        FieldType::Date => "'1970-01-01'",
        FieldType::Blob if dialect == Dialect::Postgres => "''::bytea",
        FieldType::Blob => "X''",
    }
}

fn column_def(c: &ColumnMeta, dialect: Dialect) -> ColumnDef {
    let q = quote_ident(&c.name);
    let mut d = format!("{q} {}", c.ty.sql_type_in(dialect));
    // An integer primary key is assigned by the database when an insert leaves it out: a
    // rowid alias in SQLite, an identity column in PostgreSQL (unless it refers to another
    // table's row, whose key it takes).
    let rowid_alias = c.primary_key && c.ty == FieldType::Integer;
    if dialect == Dialect::Postgres && rowid_alias && c.foreign_key.is_none() {
        d.push_str(" GENERATED BY DEFAULT AS IDENTITY");
    }
    if c.primary_key {
        d.push_str(" PRIMARY KEY");
    }
    if !c.nullable && !rowid_alias {
        d.push_str(" NOT NULL");
    }
    let one_to_one = c.foreign_key.as_ref().is_some_and(|f| f.one_to_one);
    if (c.unique || one_to_one) && !c.primary_key {
        d.push_str(" UNIQUE");
    }
    if let Some(v) = &c.default {
        let _ = write!(d, " DEFAULT {}", literal(v, dialect));
    }
    if let Some(n) = c.max_length {
        let _ = write!(d, " CHECK (length({q}) <= {n})");
    }
    if c.ty == FieldType::Bool {
        let _ = write!(d, " CHECK ({q} IN (0, 1))");
    }
    let fill = match (&c.default, c.nullable) {
        (Some(v), _) => literal(v, dialect),
        (None, true) => "NULL".to_owned(),
        (None, false) => zero_literal(c.ty, dialect).to_owned(),
    };
    ColumnDef {
        name: c.name.clone(),
        field_number: c.field_number,
        sql_type: c.ty.sql_type_in(dialect),
        definition: d,
        fill,
    }
}

fn index_def(table: &str, columns: &[&str], unique: bool) -> IndexDef {
    let name = format!(
        "{}_{}_{}",
        if unique { "uq" } else { "idx" },
        table,
        columns.join("_")
    );
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    IndexDef {
        sql: format!(
            "CREATE {}INDEX {} ON {} ({})",
            if unique { "UNIQUE " } else { "" },
            quote_ident(&name),
            quote_ident(table),
            cols.join(", ")
        ),
        name,
    }
}

fn pk_name(m: &ModelMeta) -> &str {
    m.primary_key().map_or("id", |(_, c)| c.name.as_str())
}

fn model_table(m: &ModelMeta, models: &[ModelMeta], dialect: Dialect) -> TableDef {
    let mut constraints = Vec::new();
    let mut indexes = Vec::new();
    for c in &m.columns {
        if let Some(fk) = &c.foreign_key {
            let target = find_model(models, &fk.model);
            let table = target.map_or(fk.model.as_str(), |t| t.table.as_str());
            let pk = target.map_or("id", pk_name);
            constraints.push(format!(
                "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}",
                quote_ident(&c.name),
                quote_ident(table),
                quote_ident(pk),
                fk.on_delete.sql()
            ));
        }
        let implied =
            c.primary_key || c.unique || c.foreign_key.as_ref().is_some_and(|f| f.one_to_one);
        if !implied && (c.index || c.foreign_key.is_some()) {
            indexes.push(index_def(&m.table, &[c.name.as_str()], false));
        }
    }
    for idx in &m.indexes {
        let cols: Vec<&str> = idx.columns.iter().map(String::as_str).collect();
        indexes.push(index_def(&m.table, &cols, idx.unique));
    }
    TableDef {
        name: m.table.clone(),
        columns: m.columns.iter().map(|c| column_def(c, dialect)).collect(),
        constraints,
        indexes,
    }
}

/// The two column names of the join table of a relation from `source` to `target`.
pub fn join_columns(source: &ModelMeta, target: &ModelMeta) -> (String, String) {
    if source.table == target.table {
        (
            format!("from_{}_id", source.table),
            format!("to_{}_id", target.table),
        )
    } else {
        (
            format!("{}_id", source.table),
            format!("{}_id", target.table),
        )
    }
}

fn join_table(source: &ModelMeta, rel: &str, target: &ModelMeta, dialect: Dialect) -> TableDef {
    let name = format!("{}_{}", source.table, rel);
    let (a, b) = join_columns(source, target);
    let pk_type = |m: &ModelMeta| m.primary_key().map_or(FieldType::Integer, |(_, c)| c.ty);
    let col = |n: &str, num, ty: FieldType| ColumnDef {
        name: n.to_owned(),
        field_number: num,
        sql_type: ty.sql_type_in(dialect),
        definition: format!("{} {} NOT NULL", quote_ident(n), ty.sql_type_in(dialect)),
        fill: zero_literal(ty, dialect).to_owned(),
    };
    let fk = |n: &str, m: &ModelMeta| {
        format!(
            "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE CASCADE",
            quote_ident(n),
            quote_ident(&m.table),
            quote_ident(pk_name(m))
        )
    };
    TableDef {
        columns: vec![col(&a, 1, pk_type(source)), col(&b, 2, pk_type(target))],
        constraints: vec![
            format!("PRIMARY KEY ({}, {})", quote_ident(&a), quote_ident(&b)),
            fk(&a, source),
            fk(&b, target),
        ],
        indexes: vec![index_def(&name, &[b.as_str()], false)],
        name,
    }
}

/// The complete SQLite DDL for `models`: one CREATE TABLE per model (an implicit integer `id`
/// primary key when none is declared), join tables for many-to-many relations without a
/// `through` model, and CREATE INDEX statements. Identical input gives byte-identical output.
pub fn create_sql(models: &[ModelMeta]) -> Result<String, SchemaError> {
    create_sql_in(models, Dialect::Sqlite)
}

/// As [`create_sql`], in `dialect`: the same tables, columns, constraints and indexes, with
/// the dialect's types ([`Dialect::Postgres`] says which).
pub fn create_sql_in(models: &[ModelMeta], dialect: Dialect) -> Result<String, SchemaError> {
    let tables = TableDef::from_models_in(models, dialect)?;
    let mut out = String::new();
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&t.create_sql());
    }
    Ok(out)
}
