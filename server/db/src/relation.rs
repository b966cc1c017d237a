//! Many-to-many links: add, remove and list, through a join table or a `through` model.

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::model::{Model, Relation, RowReader};
use crate::schema::{ddl::join_columns, quote_ident, validate::through_columns};
use crate::stmt::statements;
use crate::time::Timestamp;
use crate::value::Value;

/// Where the links of a relation live.
struct LinkTable {
    table: String,
    source: String,
    target: String,
    /// auto_now(_add) columns of a through model, set on insert.
    time_columns: Vec<String>,
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
            }
        }
        None => {
            let (a, b) = join_columns(s, t);
            LinkTable {
                table: format!("{}_{}", s.table, rel.name()),
                source: a,
                target: b,
                time_columns: Vec::new(),
            }
        }
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
        self.conn
            .prepare_cached(&sql)?
            .execute(rusqlite::params_from_iter(params.iter()))?;
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
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .execute((source.into(), target.into()))?)
    }

    /// The `T` rows linked to the `S` row `source`, ordered by primary key.
    pub fn linked<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        source: impl Into<Value>,
    ) -> Result<Vec<T>> {
        let lt = link_table(rel)?;
        self.related_through::<T>(&lt.table, &lt.target, &lt.source, source.into())
    }

    /// The `S` rows linked to the `T` row `target` (the relation followed backwards).
    pub fn linked_from<S: Model, T: Model>(
        &self,
        rel: Relation<S, T>,
        target: impl Into<Value>,
    ) -> Result<Vec<S>> {
        let lt = link_table(rel)?;
        self.related_through::<S>(&lt.table, &lt.source, &lt.target, target.into())
    }

    fn related_through<R: Model>(
        &self,
        table: &str,
        want: &str,
        have: &str,
        key: Value,
    ) -> Result<Vec<R>> {
        let st = statements::<R>();
        let pk = R::meta()
            .primary_key()
            .map_or("rowid".to_owned(), |(_, c)| quote_ident(&c.name));
        let sql = format!(
            "{} WHERE {pk} IN (SELECT {} FROM {} WHERE {} = ?1) ORDER BY {pk}",
            st.default_select,
            quote_ident(want),
            quote_ident(table),
            quote_ident(have)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([key])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(R::from_row(&RowReader::new(row, &st.default_projection))?);
        }
        Ok(out)
    }
}
