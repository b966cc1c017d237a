//! A small application with database writes, for the crash, fault and load tests: logged-in
//! users add notes (one row each, written through `fluxon-db`) and count them.

use std::sync::LazyLock;

use fluxon_db::schema::{ColumnMeta, FieldType, ModelMeta};
use fluxon_db::{AsyncDatabase, Column, Model, RowReader, SqlValue};
use fluxon_server::{Request, RouteOptions, Router, Status};

/// Routes of the notes application.
pub mod routes {
    /// Adds a note as the session's user; replies with its id once committed.
    pub const ADD: &str = "notes.App/Add";
    /// Counts the caller's notes.
    pub const COUNT: &str = "notes.App/Count";
    /// Grants any storage operation (authorization is the application's business).
    pub const GRANT: &str = "notes.Storage/Grant";
}

/// What the grant route is asked for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantAsk {
    /// `fluxon_server::grant::Op` as a number.
    #[prost(int32, tag = "1")]
    pub op: i32,
    /// The path.
    #[prost(string, tag = "2")]
    pub path: String,
    /// Whether a write may replace a file.
    #[prost(bool, tag = "3")]
    pub overwrite: bool,
}

/// A note, written as codegen emits model code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Note {
    /// Implicit primary key.
    pub id: i64,
    /// The session's user when the note was added.
    pub author: i64,
    /// The client's sequence number (client, call).
    pub seq: i64,
    /// Text.
    pub text: String,
}

impl Note {
    /// Column `id`.
    pub const ID: Column<Self, i64> = Column::new(0, "id");
    /// Column `author`.
    pub const AUTHOR: Column<Self, i64> = Column::new(1, "author");
    /// Column `seq`.
    pub const SEQ: Column<Self, i64> = Column::new(2, "seq");
    /// Column `text`.
    pub const TEXT: Column<Self, String> = Column::new(3, "text");
}

static NOTE_META: LazyLock<ModelMeta> = LazyLock::new(|| {
    ModelMeta::new("Note", "note")
        .column(ColumnMeta::new("author", 1, FieldType::Integer).index())
        .column(ColumnMeta::new("seq", 2, FieldType::Integer))
        .column(ColumnMeta::new("text", 3, FieldType::Text))
        .normalized()
});

impl Model for Note {
    fn meta() -> &'static ModelMeta {
        &NOTE_META
    }
    fn from_row(row: &RowReader<'_, '_>) -> fluxon_db::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            author: row.get(1)?,
            seq: row.get(2)?,
            text: row.get(3)?,
        })
    }
    fn values(&self) -> Vec<fluxon_db::Arg<'_>> {
        vec![
            self.id.to_arg(),
            self.author.to_arg(),
            self.seq.to_arg(),
            self.text.to_arg(),
        ]
    }
}

/// A note to add.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AddNote {
    /// The client's sequence number.
    #[prost(int64, tag = "1")]
    pub seq: i64,
    /// Text.
    #[prost(string, tag = "2")]
    pub text: String,
}

/// A note's id, or a count.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Id {
    /// The value.
    #[prost(int64, tag = "1")]
    pub id: i64,
}

/// Opens (creating) the notes database at `path`.
pub async fn open(path: &std::path::Path, pool: usize) -> fluxon_db::Result<AsyncDatabase> {
    let db = AsyncDatabase::open(path, pool).await?;
    let exists = db
        .read(|h| {
            let conn = h
                .connection()
                .ok_or_else(|| fluxon_db::Error::InvalidQuery("notes use SQLite".into()))?;
            Ok(conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'note'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(fluxon_db::Error::from)?
                > 0)
        })
        .await?;
    if !exists {
        db.create_tables(&[Note::meta().clone()]).await?;
    }
    Ok(db)
}

/// The notes routes over `db`.
pub fn router(db: AsyncDatabase) -> Router {
    let db = std::sync::Arc::new(db);
    let add_db = std::sync::Arc::clone(&db);
    Router::new()
        .route_with(
            routes::ADD,
            RouteOptions::new().requires_login(),
            move |req: Request<AddNote>| {
                let db = std::sync::Arc::clone(&add_db);
                async move {
                    let author = req.require_user()?;
                    let note = Note {
                        id: 0,
                        author,
                        seq: req.seq,
                        text: req.text.clone(),
                    };
                    let id = db
                        .insert(note)
                        .await
                        .map_err(|e| Status::internal(format!("cannot add the note: {e}")))?;
                    Ok::<_, Status>(Id { id })
                }
            },
        )
        .route(routes::GRANT, |req: Request<GrantAsk>| async move {
            let op = fluxon_server::grant::Op::try_from(req.op)
                .map_err(|_| Status::invalid_argument("unknown operation"))?;
            req.grant(op, req.path.clone())
                .overwrite(req.overwrite)
                .sign()
        })
        .route_with(
            routes::COUNT,
            RouteOptions::new().requires_login(),
            move |req: Request<()>| {
                let db = std::sync::Arc::clone(&db);
                async move {
                    let author = req.require_user()?;
                    let n = db
                        .select::<Note>()
                        .filter(Note::AUTHOR.eq(author))
                        .count()
                        .await
                        .map_err(|e| Status::internal(format!("cannot count: {e}")))?;
                    Ok::<_, Status>(Id { id: n })
                }
            },
        )
}
