//! Many-to-many links: add, remove and list, through a join table or a `through` model.

use std::any::TypeId;
use std::sync::RwLock;

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::model::{Model, Relation, RowReader};
use crate::schema::{join_columns, quote_ident, through_columns};
use crate::stmt::{cached, statements, Leaked};
use crate::value::Value;
use fluxon_schema::Timestamp;

/// Where the links of a relation live.
struct LinkTable {
    table: String,
    source: String,
    target: String,
    /// auto_now(_add) columns of a through model, set on insert.
    time_columns: Vec<String>,
    /// A pair of rows can be linked at most once (a join table's primary key, or a unique
    /// index or column of the through model within the two link columns).
    pairs_unique: bool,
}

fn link_table<S: Model, T: Model>(rel: Relation<S, T>) -> Result<LinkTable> {
    let (s, t) = (S::meta(), T::meta());
    let declared = s.many_to_many.iter().find(|r| r.name == rel.name());
    if declared.is_none_or(|r| r.target != t.name) {
        return Err(Error::InvalidQuery(format!(
            "{} has no many-to-many {} to {}",
            s.name,
            rel.name(),
            t.name
        )));
    }
    Ok(match rel.through_meta() {
        Some(th) => {
            let (a, b) = through_columns(th, &s.name, &t.name).map_err(|missing| {
                Error::InvalidQuery(format!("{} has no foreign key to {missing}", th.name))
            })?;
            LinkTable {
                table: th.table.clone(),
                source: a.to_owned(),
                target: b.to_owned(),
                time_columns: th
                    .columns
                    .iter()
                    .filter(|c| c.auto_now || c.auto_now_add)
                    .map(|c| c.name.clone())
                    .collect(),
                pairs_unique: th
                    .indexes
                    .iter()
                    .any(|ix| ix.unique && ix.columns.iter().all(|c| c == a || c == b))
                    || th
                        .columns
                        .iter()
                        .any(|c| (c.unique || c.primary_key) && (c.name == a || c.name == b)),
            }
        }
        None => {
            let (a, b) = join_columns(s, t);
            LinkTable {
                table: format!("{}_{}", s.table, rel.name()),
                source: a,
                target: b,
                time_columns: Vec::new(),
                // PRIMARY KEY (source, target).
                pairs_unique: true,
            }
        }
    })
}

/// Which way a relation is followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// From `S` rows to the linked `T` rows.
    Forward,
    /// From `T` rows back to the `S` rows linking to them.
    Backward,
}

/// A relation followed one way: the models at both ends, its name, the direction.
type SqlKey = (TypeId, TypeId, &'static str, Direction);

/// The SELECT text of [`Handle::linked`] and [`Handle::linked_from`], built once per relation
/// and direction (like the per-model statements): listing links builds no SQL per call.
static RELATED_SQL: Leaked<SqlKey, str> = RwLock::new(None);

/// Name of the link column in [`related_sql`]'s derived table.
const LINK_ALIAS: &str = "__fluxon_link";

/// The rows of `R` (one end of `rel`) linked to a key of the other end, ordered by primary key.
///
/// When a pair can be linked only once, a join with the link rows, ordered by the link column
/// (equal to `R`'s key): SQLite reads the link table's index in key order and needs no sort.
/// Otherwise an `IN` subquery, so a pair linked twice yields its row once.
pub(crate) fn related_sql<S: Model, T: Model, R: Model>(
    rel: Relation<S, T>,
    direction: Direction,
) -> Result<&'static str> {
    let key = (TypeId::of::<S>(), TypeId::of::<T>(), rel.name(), direction);
    cached(&RELATED_SQL, key, || {
        let lt = link_table(rel)?;
        let (want, have) = match direction {
            Direction::Forward => (quote_ident(&lt.target), quote_ident(&lt.source)),
            Direction::Backward => (quote_ident(&lt.source), quote_ident(&lt.target)),
        };
        let meta = R::meta();
        let pk = meta.primary_key().map(|(_, c)| quote_ident(&c.name));
        // The alias must not shadow one of R's columns, which the select names unqualified
        // (and `rowid` would be ambiguous in a join).
        let join =
            lt.pairs_unique && pk.is_some() && meta.columns.iter().all(|c| c.name != LINK_ALIAS);
        let pk = pk.unwrap_or_else(|| "rowid".to_owned());
        let select = &statements::<R>().default_select;
        let table = quote_ident(&lt.table);
        let sql = if join {
            let link = quote_ident(LINK_ALIAS);
            format!(
                "{select} JOIN (SELECT {want} AS {link} FROM {table} WHERE {have} = ?1) \
                 AS \"__fluxon_links\" ON {pk} = {link} ORDER BY {link}"
            )
        } else {
            format!(
                "{select} WHERE {pk} IN (SELECT {want} FROM {table} WHERE {have} = ?1) \
                 ORDER BY {pk}"
            )
        };
        Ok(sql.into_boxed_str())
    })
}

impl Handle<'_> {
    /// Links the `S` row `source` to the `T` row `target` (a through model's other columns
    /// take their defaults; its auto_now(_add) columns are set to now).
    pub fn link<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<()> {
        let lt = link_table(rel)?;
        let mut cols = vec![quote_ident(&lt.source), quote_ident(&lt.target)];
        let mut params = vec![source.into(), target.into()];
        let now = Timestamp::now().as_micros();
        for c in &lt.time_columns {
            cols.push(quote_ident(c));
            params.push(Value::Integer(now));
        }
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_ident(&lt.table),
            cols.join(", "),
            marks.join(", ")
        );
        self.run(&sql, &params)?;
        Ok(())
    }

    /// Removes the links between `source` and `target`; returns how many were removed.
    pub fn unlink<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
        target: impl Into<Value>,
    ) -> Result<usize> {
        let lt = link_table(rel)?;
        let sql = format!(
            "DELETE FROM {} WHERE {} = ?1 AND {} = ?2",
            quote_ident(&lt.table),
            quote_ident(&lt.source),
            quote_ident(&lt.target)
        );
        self.run(&sql, &[source.into(), target.into()])
    }

    /// The `T` rows linked to the `S` row `source`, ordered by primary key.
    pub fn linked<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
    ) -> Result<Vec<T>> {
        let sql = related_sql::<S, T, T>(rel, Direction::Forward)?;
        self.related_through::<T>(sql, source.into())
    }

    /// The `S` rows linked to the `T` row `target` (the relation followed backwards).
    pub fn linked_from<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        target: impl Into<Value>,
    ) -> Result<Vec<S>> {
        let sql = related_sql::<S, T, S>(rel, Direction::Backward)?;
        self.related_through::<S>(sql, target.into())
    }

    fn related_through<R: Model>(&self, sql: &str, key: Value) -> Result<Vec<R>> {
        let st = statements::<R>();
        self.rows(sql, &[key], |row| {
            R::from_row(&RowReader::new(row, &st.default_projection))
        })
    }
}
