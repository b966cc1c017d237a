//! Per-model SQL text, built once per model type and reused by every query.

use std::any::TypeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

use crate::model::Model;
use crate::schema::{quote_ident, FieldType, ModelMeta};
use crate::value::Value;

/// SQL text of the common statements of one model.
#[derive(Debug)]
pub(crate) struct Statements {
    /// Quoted table name.
    pub(crate) table: String,
    /// Index of the primary key column.
    pub(crate) pk: Option<usize>,
    /// The primary key is an integer the database can assign.
    pub(crate) pk_auto: bool,
    /// `SELECT <default columns> FROM "table"`.
    pub(crate) default_select: String,
    /// Model column index → position in the default select.
    pub(crate) default_projection: Vec<Option<usize>>,
    /// The default select plus `WHERE <pk> = ?1`.
    pub(crate) get_by_pk: String,
    /// INSERT of every column.
    pub(crate) insert_all: String,
    /// INSERT of every column but the primary key.
    pub(crate) insert_without_pk: String,
    /// Columns set to now on insert (auto_now_add or auto_now).
    pub(crate) insert_time_columns: Vec<usize>,
    /// Columns set to now on update (auto_now).
    pub(crate) update_time_columns: Vec<usize>,
    /// Password columns.
    pub(crate) password_columns: Vec<usize>,
    /// Columns with a DEFAULT, used on insert when the model's value is NULL.
    pub(crate) defaults: Vec<(usize, Value)>,
    /// PostgreSQL's spelling of `insert_all` (`$n` placeholders), `RETURNING` the key when it
    /// is an integer (see `pg_returns_key`).
    pub(crate) pg_insert_all: String,
    /// PostgreSQL's spelling of `insert_without_pk`, likewise.
    pub(crate) pg_insert_without_pk: String,
    /// The PostgreSQL inserts return the integer key.
    pub(crate) pg_returns_key: bool,
    /// PostgreSQL: moves an identity key's sequence past the largest key, after an insert
    /// that gave the key explicitly.
    pub(crate) bump_identity: String,
}

static CACHE: Leaked<TypeId, Statements> = RwLock::new(None);

thread_local! {
    /// A per-thread copy of the few entries a thread uses: no lock, no hashing on the hot path.
    static LOCAL: RefCell<Vec<(TypeId, &'static Statements)>> = const { RefCell::new(Vec::new()) };
}

/// The statements of `M`, built once per process on first use.
pub(crate) fn statements<M: Model>() -> &'static Statements {
    let id = TypeId::of::<M>();
    LOCAL.with(|local| {
        if let Some((_, s)) = local.borrow().iter().find(|(t, _)| *t == id) {
            return *s;
        }
        let s = shared::<M>(id);
        local.borrow_mut().push((id, s));
        s
    })
}

fn shared<M: Model>(id: TypeId) -> &'static Statements {
    let built = cached(&CACHE, id, || {
        Ok::<_, Infallible>(Box::new(build(M::meta())))
    });
    match built {
        Ok(s) => s,
        Err(never) => match never {},
    }
}

/// A process-wide map of values built once and kept for the rest of the process: SQL text
/// derived from `'static` model metadata, so the set of keys is bounded by the program.
pub(crate) type Leaked<K, V> = RwLock<Option<HashMap<K, &'static V>>>;

/// The value of `key` in `cache`, built by `build` on first use (a shared lock only after that).
/// A failed build is returned and nothing is kept.
pub(crate) fn cached<K: Hash + Eq, V: ?Sized, E>(
    cache: &Leaked<K, V>,
    key: K,
    build: impl FnOnce() -> Result<Box<V>, E>,
) -> Result<&'static V, E> {
    if let Some(v) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(v);
    }
    let value = build()?;
    let mut w = cache.write().unwrap_or_else(PoisonError::into_inner);
    Ok(w.get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| Box::leak(value)))
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A comma-separated list of quoted column names.
pub(crate) fn column_list(meta: &ModelMeta, columns: &[usize]) -> String {
    let names: Vec<String> = columns
        .iter()
        .filter_map(|&i| meta.columns.get(i))
        .map(|c| quote_ident(&c.name))
        .collect();
    names.join(", ")
}

/// Model column index → result position, for a select of `columns`.
pub(crate) fn projection(meta: &ModelMeta, columns: &[usize]) -> Vec<Option<usize>> {
    let mut p = vec![None; meta.columns.len()];
    for (pos, &i) in columns.iter().enumerate() {
        if let Some(slot) = p.get_mut(i) {
            *slot = Some(pos);
        }
    }
    p
}

fn insert_sql(table: &str, meta: &ModelMeta, columns: &[usize]) -> String {
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        column_list(meta, columns),
        placeholders.join(", ")
    )
}

fn build(meta: &ModelMeta) -> Statements {
    let table = quote_ident(&meta.table);
    let pk = meta.primary_key().map(|(i, _)| i);
    let pk_auto = meta
        .primary_key()
        .is_some_and(|(_, c)| c.ty == FieldType::Integer && c.foreign_key.is_none());
    let default_columns: Vec<usize> = (0..meta.columns.len())
        .filter(|&i| !meta.columns[i].password)
        .collect();
    let default_select = format!(
        "SELECT {} FROM {table}",
        column_list(meta, &default_columns)
    );
    let get_by_pk = match meta.primary_key() {
        Some((_, c)) => format!("{default_select} WHERE {} = ?1", quote_ident(&c.name)),
        None => format!("{default_select} WHERE rowid = ?1"),
    };
    let all: Vec<usize> = (0..meta.columns.len()).collect();
    let without_pk: Vec<usize> = all.iter().copied().filter(|&i| Some(i) != pk).collect();
    let which = |f: fn(&crate::schema::ColumnMeta) -> bool| -> Vec<usize> {
        (0..meta.columns.len())
            .filter(|&i| f(&meta.columns[i]))
            .collect()
    };
    let returning = meta
        .primary_key()
        .filter(|(_, c)| c.ty == FieldType::Integer)
        .map(|(_, c)| format!(" RETURNING {}", quote_ident(&c.name)));
    let insert_all = insert_sql(&table, meta, &all);
    let insert_without_pk = insert_sql(&table, meta, &without_pk);
    let pg_insert = |sql: &str| {
        let mut pg = crate::pg::numbered(sql);
        pg.push_str(returning.as_deref().unwrap_or(""));
        pg
    };
    let bump_identity = match meta.primary_key() {
        Some((_, c)) => format!(
            "SELECT setval(pg_get_serial_sequence({}, {}), GREATEST((SELECT MAX({}) FROM {table}), 1))",
            quote_literal(&table),
            quote_literal(&c.name),
            quote_ident(&c.name)
        ),
        None => String::new(),
    };
    Statements {
        pg_insert_all: pg_insert(&insert_all),
        pg_insert_without_pk: pg_insert(&insert_without_pk),
        pg_returns_key: returning.is_some(),
        bump_identity,
        insert_time_columns: which(|c| c.auto_now || c.auto_now_add),
        update_time_columns: which(|c| c.auto_now),
        password_columns: which(|c| c.password),
        defaults: meta
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.default.clone().map(|d| (i, d)))
            .collect(),
        insert_all,
        insert_without_pk,
        default_projection: projection(meta, &default_columns),
        default_select,
        get_by_pk,
        table,
        pk,
        pk_auto,
    }
}
