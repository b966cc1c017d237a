//! Where-expressions over typed columns, combined with `&`, `|` and `!`.

use std::marker::PhantomData;
use std::ops::{BitAnd, BitOr, Not};

use crate::schema::{quote_ident, Dialect};
use crate::value::Value;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "<>",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Like => "LIKE",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Cmp(&'static str, CmpOp, Value),
    In(&'static str, Vec<Value>),
    Null(&'static str, bool),
    Not(Box<Self>),
    And(Box<Self>, Box<Self>),
    Or(Box<Self>, Box<Self>),
}

/// A boolean condition on rows of model `M`. Build it from [`crate::Column`] methods and
/// combine with `a & b`, `a | b` and `!a`. Values are always bound parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr<M> {
    node: Node,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Expr<M> {
    fn wrap(node: Node) -> Self {
        Self {
            node,
            _marker: PhantomData,
        }
    }
    pub(crate) fn cmp(column: &'static str, op: CmpOp, v: Value) -> Self {
        Self::wrap(Node::Cmp(column, op, v))
    }
    pub(crate) fn is_in(column: &'static str, values: Vec<Value>) -> Self {
        Self::wrap(Node::In(column, values))
    }
    pub(crate) fn null(column: &'static str, is_null: bool) -> Self {
        Self::wrap(Node::Null(column, is_null))
    }

    /// Appends the SQL of this expression to `sql` and its values to `params`.
    pub(crate) fn render(&self, sql: &mut String, params: &mut Vec<Value>, dialect: Dialect) {
        render(&self.node, sql, params, dialect);
    }
}

fn render(node: &Node, sql: &mut String, params: &mut Vec<Value>, dialect: Dialect) {
    match node {
        Node::Cmp(col, op, v) => {
            sql.push_str(&quote_ident(col));
            sql.push(' ');
            // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE is the same match.
            sql.push_str(match (op, dialect) {
                (CmpOp::Like, Dialect::Postgres) => "ILIKE",
                _ => op.sql(),
            });
            sql.push_str(" ?");
            if *op == CmpOp::Like {
                sql.push_str(" ESCAPE '\\'");
            }
            params.push(v.clone());
        }
        Node::In(_, values) if values.is_empty() => sql.push_str("(1 = 0)"),
        Node::In(col, values) => {
            sql.push_str(&quote_ident(col));
            sql.push_str(" IN (");
            for (i, v) in values.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                params.push(v.clone());
            }
            sql.push(')');
        }
        Node::Null(col, is_null) => {
            sql.push_str(&quote_ident(col));
            sql.push_str(if *is_null { " IS NULL" } else { " IS NOT NULL" });
        }
        Node::Not(inner) => {
            sql.push_str("NOT (");
            render(inner, sql, params, dialect);
            sql.push(')');
        }
        Node::And(a, b) | Node::Or(a, b) => {
            sql.push('(');
            render(a, sql, params, dialect);
            sql.push_str(if matches!(node, Node::And(..)) {
                " AND "
            } else {
                " OR "
            });
            render(b, sql, params, dialect);
            sql.push(')');
        }
    }
}

impl<M> BitAnd for Expr<M> {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self::wrap(Node::And(Box::new(self.node), Box::new(rhs.node)))
    }
}

impl<M> BitOr for Expr<M> {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self::wrap(Node::Or(Box::new(self.node), Box::new(rhs.node)))
    }
}

impl<M> Not for Expr<M> {
    type Output = Self;
    fn not(self) -> Self {
        Self::wrap(Node::Not(Box::new(self.node)))
    }
}

/// An ORDER BY term on a column of model `M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order<M> {
    pub(crate) column: &'static str,
    pub(crate) descending: bool,
    _marker: PhantomData<fn() -> M>,
}

impl<M> Order<M> {
    pub(crate) fn new(column: &'static str, descending: bool) -> Self {
        Self {
            column,
            descending,
            _marker: PhantomData,
        }
    }
}

/// Escapes `%`, `_` and `\` so that `text` matches literally inside a LIKE pattern
/// (patterns built by [`crate::Column::like`] use `\` as the escape character).
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M;

    #[test]
    fn nested_rendering_binds_every_value() {
        let a: Expr<M> = Expr::cmp("a", CmpOp::Eq, Value::Integer(1));
        let b: Expr<M> = Expr::cmp("b\"x", CmpOp::Like, Value::Text("'; DROP".into()));
        let c: Expr<M> = Expr::is_in("c", vec![Value::Integer(2), Value::Integer(3)]);
        let e = (a | !b) & c & Expr::null("d", true);
        let mut sql = String::new();
        let mut params = Vec::new();
        e.render(&mut sql, &mut params, Dialect::Sqlite);
        assert_eq!(
            sql,
            r#"((("a" = ? OR NOT ("b""x" LIKE ? ESCAPE '\')) AND "c" IN (?, ?)) AND "d" IS NULL)"#
        );
        assert_eq!(params.len(), 4);
        assert!(!sql.contains("DROP"));
        let mut pg = String::new();
        e.render(&mut pg, &mut Vec::new(), Dialect::Postgres);
        assert_eq!(pg, sql.replace(" LIKE ", " ILIKE "));
    }

    #[test]
    fn empty_in_matches_nothing() {
        let e: Expr<M> = Expr::is_in("c", vec![]);
        let mut sql = String::new();
        e.render(&mut sql, &mut Vec::new(), Dialect::Sqlite);
        assert_eq!(sql, "(1 = 0)");
    }

    #[test]
    fn like_escape() {
        assert_eq!(escape_like("50%_a\\"), "50\\%\\_a\\\\");
    }
}
