//! Models: reading `(fluxon.model)` messages into [`ModelMeta`], with every schema mistake
//! reported at its place in the `.proto` file.

use std::collections::{BTreeMap, HashMap, HashSet};

use fluxon_schema::Value;
use fluxon_schema::{ColumnMeta, FieldType, ModelMeta, OnDelete, SchemaError, IMPLICIT_ID};
use heck::ToSnakeCase as _;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::error::{Diagnostic, Location};
use crate::load::Loaded;
use crate::options::{Extensions, FieldOpts, OnDeleteOpt};

/// `FieldDescriptorProto.options`, `DescriptorProto.options`: source-code-info path elements.
const FIELD_OPTIONS: i32 = 8;
const MESSAGE_OPTIONS: i32 = 7;
/// Extension numbers of `(fluxon.model)` and `(fluxon.field)`.
const MODEL_EXT: i32 = 51730;
const FIELD_EXT: i32 = 51731;

/// The Rust type of a model struct field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RustTy {
    I32,
    I64,
    U32,
    F32,
    F64,
    Bool,
    String,
    Bytes,
    Timestamp,
    Date,
    Password,
}

/// One stored column of a model, in `meta.columns` order.
#[derive(Debug, Clone)]
pub(crate) struct ColumnField {
    pub(crate) name: String,
    pub(crate) ty: RustTy,
    pub(crate) nullable: bool,
    pub(crate) doc: Option<String>,
}

/// A many-to-many relation of a model.
#[derive(Debug, Clone)]
pub(crate) struct RelationField {
    pub(crate) name: String,
    pub(crate) target: String,
    pub(crate) through: Option<String>,
    pub(crate) doc: Option<String>,
}

/// One model, ready for code generation.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) package: String,
    pub(crate) meta: ModelMeta,
    pub(crate) columns: Vec<ColumnField>,
    pub(crate) relations: Vec<RelationField>,
    pub(crate) doc: Option<String>,
}

/// A field's location, preferring its `(fluxon.field)` option.
fn field_loc(loaded: &Loaded, f: &FieldDescriptor) -> Location {
    let path = f.path();
    let opt: Vec<i32> = path
        .iter()
        .copied()
        .chain([FIELD_OPTIONS, FIELD_EXT])
        .collect();
    loaded.locate(f.parent_file().name(), &[&opt, path])
}

fn message_loc(loaded: &Loaded, m: &MessageDescriptor) -> Location {
    loaded.locate(m.parent_file().name(), &[m.path()])
}

fn model_opt_loc(loaded: &Loaded, m: &MessageDescriptor) -> Location {
    let path = m.path();
    let opt: Vec<i32> = path
        .iter()
        .copied()
        .chain([MESSAGE_OPTIONS, MODEL_EXT])
        .collect();
    loaded.locate(m.parent_file().name(), &[&opt, path])
}

/// Per-model facts needed by the checks that span models.
struct Pending {
    desc: MessageDescriptor,
    model: Model,
    /// Field descriptors of the columns (None for the implicit id), in `meta.columns` order
    /// before normalization.
    column_fields: Vec<FieldDescriptor>,
    relation_fields: Vec<FieldDescriptor>,
}

/// Reads every model of the files being generated. `generated` holds their file names.
pub(crate) fn read_models(
    loaded: &Loaded,
    ext: &Extensions,
    generated: &HashSet<String>,
) -> Result<Vec<Model>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut pending = Vec::new();
    let in_scope = |m: &MessageDescriptor| generated.contains(m.parent_file().name());

    // Models are top-level messages; field options only make sense on models.
    for msg in loaded.pool.all_messages().filter(|m| in_scope(m)) {
        let model_opts = ext.model(&msg);
        if model_opts.is_some() && msg.parent_message().is_some() {
            diags.push(
                Diagnostic::new(
                    Some(message_loc(loaded, &msg)),
                    format!("model `{}` is nested in another message", msg.full_name()),
                )
                .hint("declare models at the top level of the file"),
            );
            continue;
        }
        if model_opts.is_none() {
            if let Some(f) = msg.fields().find(|f| ext.has_field_options(f)) {
                diags.push(
                    Diagnostic::new(
                        Some(field_loc(loaded, &f)),
                        format!(
                            "field `{}` has (fluxon.field) options but `{}` is not a model",
                            f.name(),
                            msg.name()
                        ),
                    )
                    .hint("add `option (fluxon.model) = {};` to the message, or remove the field options"),
                );
            }
        }
    }

    let model_descs: Vec<MessageDescriptor> = loaded
        .pool
        .all_messages()
        .filter(|m| in_scope(m) && m.parent_message().is_none() && ext.model(m).is_some())
        .collect();
    let names: Vec<String> = model_descs
        .iter()
        .map(|m| m.full_name().to_owned())
        .collect();

    for desc in &model_descs {
        match read_model(loaded, ext, desc, &names) {
            Ok(p) => pending.push(p),
            Err(mut d) => diags.append(&mut d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    check_across(loaded, &pending, &mut diags);
    if !diags.is_empty() {
        return Err(diags);
    }
    // Backstop: the database layer's own validation, per package.
    let mut by_package: BTreeMap<&str, Vec<&Pending>> = BTreeMap::new();
    for p in &pending {
        by_package.entry(&p.model.package).or_default().push(p);
    }
    for group in by_package.values() {
        let metas: Vec<ModelMeta> = group.iter().map(|p| p.model.meta.clone()).collect();
        if let Err(e) = fluxon_schema::validate(&metas) {
            diags.push(schema_error(loaded, group, &e));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(pending.into_iter().map(|p| p.model).collect())
}

/// Maps the database layer's validation error to the model it names.
fn schema_error(loaded: &Loaded, group: &[&Pending], e: &SchemaError) -> Diagnostic {
    let text = e.to_string();
    let loc = group
        .iter()
        .find(|p| text.contains(&format!("model {}", p.model.meta.name)))
        .or_else(|| group.first())
        .map(|p| message_loc(loaded, &p.desc));
    Diagnostic::new(loc, text)
}

/// Resolves a model reference written in an option: `Name` (same package) or `pkg.Name`.
fn resolve(reference: &str, package: &str, names: &[String]) -> Option<String> {
    let reference = reference.trim_start_matches('.');
    let local = if package.is_empty() {
        reference.to_owned()
    } else {
        format!("{package}.{reference}")
    };
    names
        .iter()
        .find(|n| **n == local)
        .or_else(|| names.iter().find(|n| *n == reference))
        .cloned()
}

fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn unknown_model(
    loaded: &Loaded,
    f: &FieldDescriptor,
    option: &str,
    target: &str,
    names: &[String],
) -> Diagnostic {
    let known: Vec<&str> = names.iter().map(|n| short_name(n)).collect();
    Diagnostic::new(
        Some(field_loc(loaded, f)),
        format!(
            "{option} of field `{}` names `{target}`, which is not a model",
            f.name()
        ),
    )
    .hint(format!(
        "declare `message {target}` with `option (fluxon.model) = {{}};` or use one of: {}",
        if known.is_empty() {
            "(no models)".to_owned()
        } else {
            known.join(", ")
        }
    ))
}

fn reserved_prefix(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("sqlite_") || lower.starts_with("_fluxon")
}

fn read_model(
    loaded: &Loaded,
    ext: &Extensions,
    desc: &MessageDescriptor,
    names: &[String],
) -> Result<Pending, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let opts = ext.model(desc).unwrap_or_default();
    let package = desc.package_name().to_owned();
    let table = if opts.table.is_empty() {
        desc.name().to_snake_case()
    } else {
        opts.table.clone()
    };
    if reserved_prefix(&table) {
        diags.push(
            Diagnostic::new(
                Some(model_opt_loc(loaded, desc)),
                format!("table name `{table}` uses a prefix reserved by SQLite or Fluxon"),
            )
            .hint(
                "names starting with `sqlite_` or `_fluxon` are reserved: choose another `table`",
            ),
        );
    }
    let mut meta = ModelMeta::new(desc.name(), table);
    meta.authorized_user = opts.authorized_user;
    let mut columns = Vec::new();
    let mut column_fields = Vec::new();
    let mut relations = Vec::new();
    let mut relation_fields = Vec::new();
    let mut primary: Option<FieldDescriptor> = None;

    for f in desc.fields() {
        let fo = ext.field(&f);
        let loc = || Some(field_loc(loaded, &f));
        let comments = loaded.comments(f.parent_file().name(), f.path());
        if reserved_prefix(f.name()) {
            diags.push(
                Diagnostic::new(
                    loc(),
                    format!(
                        "column name `{}` uses a prefix reserved by SQLite or Fluxon",
                        f.name()
                    ),
                )
                .hint("names starting with `sqlite_` or `_fluxon` are reserved: rename the field"),
            );
            continue;
        }
        if !fo.many_to_many.is_empty() {
            match relation(loaded, &f, &fo, &package, names) {
                Ok(rel) => {
                    meta = meta.many_to_many(
                        f.name(),
                        f.number(),
                        rel.target.clone(),
                        rel.through.as_deref(),
                    );
                    relations.push(RelationField {
                        doc: comments,
                        ..rel
                    });
                    relation_fields.push(f.clone());
                }
                Err(d) => diags.push(d),
            }
            continue;
        }
        if !fo.through.is_empty() {
            diags.push(
                Diagnostic::new(loc(), format!("field `{}` sets `through` without `many_to_many`", f.name()))
                    .hint("`through` names the link model of a many-to-many relation: add `many_to_many: \"Target\"`"),
            );
            continue;
        }
        match column(loaded, &f, &fo, &package, names) {
            Ok((col, ty)) => {
                if col.primary_key {
                    if let Some(first) = &primary {
                        diags.push(
                            Diagnostic::new(
                                loc(),
                                format!(
                                    "model `{}` has two primary keys: `{}` and `{}`",
                                    desc.name(),
                                    first.name(),
                                    f.name()
                                ),
                            )
                            .hint("a model has at most one primary key; use `unique: { columns: [..] }` on the model for a multi-column constraint"),
                        );
                        continue;
                    }
                    primary = Some(f.clone());
                }
                columns.push(ColumnField {
                    name: f.name().to_owned(),
                    ty,
                    nullable: col.nullable,
                    doc: comments,
                });
                meta = meta.column(col);
                column_fields.push(f.clone());
            }
            Err(d) => diags.push(d),
        }
    }

    let column_names: HashSet<&str> = meta.columns.iter().map(|c| c.name.as_str()).collect();
    let implicit_id = primary.is_none();
    let mut groups = Vec::new();
    for (unique, list) in [(true, &opts.unique), (false, &opts.index)] {
        for cols in list {
            if cols.is_empty() {
                diags.push(
                    Diagnostic::new(
                        Some(model_opt_loc(loaded, desc)),
                        format!(
                            "an empty {} group on model `{}`",
                            if unique { "unique" } else { "index" },
                            desc.name()
                        ),
                    )
                    .hint("list the columns: `{ columns: [\"a\", \"b\"] }`"),
                );
                continue;
            }
            for c in cols {
                let known = column_names.contains(c.as_str()) || (implicit_id && c == IMPLICIT_ID);
                if !known {
                    diags.push(
                        Diagnostic::new(
                            Some(model_opt_loc(loaded, desc)),
                            format!(
                                "{} of model `{}` names `{c}`, which is not one of its columns",
                                if unique { "unique" } else { "index" },
                                desc.name()
                            ),
                        )
                        .hint(format!("columns: {}", sorted(&column_names).join(", "))),
                    );
                }
            }
            groups.push((cols.clone(), unique));
        }
    }
    for (cols, unique) in groups {
        let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
        meta = meta.index(&cols, unique);
    }
    if opts.authorized_user {
        let passwords = meta.columns.iter().filter(|c| c.password).count();
        if passwords != 1 {
            diags.push(
                Diagnostic::new(
                    Some(model_opt_loc(loaded, desc)),
                    format!(
                        "authorized user `{}` has {passwords} password fields; it needs exactly one",
                        desc.name()
                    ),
                )
                .hint("mark one string field `[(fluxon.field) = { password: true }]`"),
            );
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let meta = meta.normalized();
    if implicit_id {
        columns.insert(
            0,
            ColumnField {
                name: IMPLICIT_ID.to_owned(),
                ty: RustTy::I64,
                nullable: false,
                doc: None,
            },
        );
    }
    Ok(Pending {
        desc: desc.clone(),
        model: Model {
            package,
            meta,
            columns,
            relations,
            doc: loaded.comments(desc.parent_file().name(), desc.path()),
        },
        column_fields,
        relation_fields,
    })
}

fn sorted<'a>(set: &HashSet<&'a str>) -> Vec<&'a str> {
    let mut v: Vec<&str> = set.iter().copied().collect();
    v.sort_unstable();
    v
}

fn relation(
    loaded: &Loaded,
    f: &FieldDescriptor,
    fo: &FieldOpts,
    package: &str,
    names: &[String],
) -> Result<RelationField, Diagnostic> {
    let loc = Some(field_loc(loaded, f));
    if !f.is_list() || f.is_map() {
        return Err(Diagnostic::new(
            loc,
            format!("many_to_many field `{}` is not a repeated field", f.name()),
        )
        .hint("declare it `repeated int64` (the related primary keys)"));
    }
    if fo.primary_key || fo.unique || !fo.foreign_key.is_empty() || fo.max_length.is_some() {
        return Err(Diagnostic::new(
            loc,
            format!(
                "many_to_many field `{}` is not a column: column options do not apply",
                f.name()
            ),
        )
        .hint("keep only `many_to_many` and `through` on this field"));
    }
    let target = resolve(&fo.many_to_many, package, names)
        .ok_or_else(|| unknown_model(loaded, f, "many_to_many", &fo.many_to_many, names))?;
    let through = if fo.through.is_empty() {
        None
    } else {
        Some(
            resolve(&fo.through, package, names)
                .ok_or_else(|| unknown_model(loaded, f, "through", &fo.through, names))?,
        )
    };
    for full in std::iter::once(&target).chain(through.as_ref()) {
        if package_of(full) != package {
            return Err(cross_package(loaded, f, full));
        }
    }
    Ok(RelationField {
        name: f.name().to_owned(),
        target: short_name(&target).to_owned(),
        through: through.map(|t| short_name(&t).to_owned()),
        doc: None,
    })
}

fn package_of(full: &str) -> &str {
    full.rsplit_once('.').map_or("", |(p, _)| p)
}

fn cross_package(loaded: &Loaded, f: &FieldDescriptor, target: &str) -> Diagnostic {
    Diagnostic::new(
        Some(field_loc(loaded, f)),
        format!(
            "field `{}` relates to `{target}` in another package",
            f.name()
        ),
    )
    .hint("relations work within one package: move the related models into the same package")
}

/// The logical and Rust types of a stored field, or why it cannot be stored.
fn field_type(f: &FieldDescriptor, fo: &FieldOpts) -> Result<(FieldType, RustTy), String> {
    let kind = f.kind();
    let timestamp = fo.auto_now || fo.auto_now_add;
    Ok(match kind {
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => (FieldType::Integer, RustTy::I32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 if timestamp => {
            (FieldType::Timestamp, RustTy::Timestamp)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => (FieldType::Integer, RustTy::I64),
        Kind::Uint32 | Kind::Fixed32 => (FieldType::Integer, RustTy::U32),
        Kind::Uint64 | Kind::Fixed64 => {
            return Err(format!(
                "{} cannot be stored: SQLite integers are signed 64-bit",
                kind_name(&kind)
            ))
        }
        Kind::Float => (FieldType::Real, RustTy::F32),
        Kind::Double => (FieldType::Real, RustTy::F64),
        Kind::Bool => (FieldType::Bool, RustTy::Bool),
        Kind::String if fo.password => (FieldType::Text, RustTy::Password),
        Kind::String if fo.date => (FieldType::Date, RustTy::Date),
        Kind::String => (FieldType::Text, RustTy::String),
        Kind::Bytes => (FieldType::Blob, RustTy::Bytes),
        Kind::Enum(_) => (FieldType::Integer, RustTy::I32),
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            (FieldType::Timestamp, RustTy::Timestamp)
        }
        Kind::Message(m) => {
            return Err(format!(
                "a message field (`{}`) cannot be stored in a column",
                m.full_name()
            ))
        }
    })
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn column(
    loaded: &Loaded,
    f: &FieldDescriptor,
    fo: &FieldOpts,
    package: &str,
    names: &[String],
) -> Result<(ColumnMeta, RustTy), Diagnostic> {
    let loc = || Some(field_loc(loaded, f));
    let name = f.name();
    if f.is_map() {
        return Err(Diagnostic::new(
            loc(),
            format!("map field `{name}` cannot be stored in a column"),
        )
        .hint("store the entries in a separate model with a foreign key to this one"));
    }
    if f.is_list() {
        return Err(Diagnostic::new(loc(), format!("repeated field `{name}` cannot be stored in a column"))
            .hint("use `many_to_many: \"Model\"` for links to other rows, or a separate model with a foreign key to this one"));
    }
    if f.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
        return Err(Diagnostic::new(
            loc(),
            format!("field `{name}` of a oneof cannot be stored in a column"),
        )
        .hint("use separate nullable fields (proto3 `optional`) instead of a oneof"));
    }
    let (ty, rust) = field_type(f, fo).map_err(|why| {
        let hint = match f.kind() {
            Kind::Uint64 | Kind::Fixed64 => "use int64 (or uint32)",
            Kind::Message(_) => "store a foreign key (`int64 x = N [(fluxon.field) = { foreign_key: \"Model\" }]`), or use google.protobuf.Timestamp for times",
            _ => "use a scalar type",
        };
        Diagnostic::new(loc(), format!("field `{name}`: {why}")).hint(hint)
    })?;
    let requires_string = |option: &str| {
        Diagnostic::new(
            loc(),
            format!(
                "{option} on field `{name}` of type {}, which is not a string",
                kind_name(&f.kind())
            ),
        )
        .hint(format!("{option} applies to `string` fields only"))
    };
    if fo.max_length.is_some() && f.kind() != Kind::String {
        return Err(requires_string("max_length"));
    }
    if fo.password && f.kind() != Kind::String {
        return Err(requires_string("password"));
    }
    if fo.date && f.kind() != Kind::String {
        return Err(requires_string("date"));
    }
    if (fo.auto_now || fo.auto_now_add) && ty != FieldType::Timestamp {
        return Err(Diagnostic::new(
            loc(),
            format!("auto_now/auto_now_add on field `{name}`, which is not a timestamp"),
        )
        .hint("use google.protobuf.Timestamp (or int64 microseconds since the epoch)"));
    }
    let nullable = fo.nullable || f.field_descriptor_proto().proto3_optional();
    let mut col = ColumnMeta::new(name, f.number(), ty);
    col.nullable = nullable;
    col.primary_key = fo.primary_key;
    col.unique = fo.unique;
    col.max_length = fo.max_length;
    col.index = fo.index;
    col.auto_now = fo.auto_now;
    col.auto_now_add = fo.auto_now_add;
    col.password = fo.password;
    if fo.primary_key && nullable {
        return Err(
            Diagnostic::new(loc(), format!("primary key `{name}` cannot be nullable"))
                .hint("drop `optional` / `nullable` from the primary key"),
        );
    }
    if let Some(text) = &fo.default {
        if fo.password {
            return Err(Diagnostic::new(
                loc(),
                format!("password field `{name}` cannot have a default"),
            )
            .hint("remove `default`"));
        }
        col.default = Some(parse_default(f, ty, text).map_err(|why| {
            Diagnostic::new(loc(), format!("default {text:?} of field `{name}`: {why}"))
                .hint("write the default as the field's type reads it: \"42\", \"1.5\", \"true\", \"text\", \"2024-01-31\", hex digits for bytes")
        })?);
    }
    let has_fk = !fo.foreign_key.is_empty();
    if !has_fk && (fo.one_to_one || fo.on_delete != OnDeleteOpt::Unspecified) {
        return Err(Diagnostic::new(
            loc(),
            format!("field `{name}` sets one_to_one/on_delete without a foreign_key"),
        )
        .hint("add `foreign_key: \"Model\"`"));
    }
    if has_fk {
        let target = resolve(&fo.foreign_key, package, names)
            .ok_or_else(|| unknown_model(loaded, f, "foreign_key", &fo.foreign_key, names))?;
        if package_of(&target) != package {
            return Err(cross_package(loaded, f, &target));
        }
        let on_delete = match fo.on_delete {
            OnDeleteOpt::Cascade => OnDelete::Cascade,
            OnDeleteOpt::SetNull => OnDelete::SetNull,
            OnDeleteOpt::Restrict => OnDelete::Restrict,
            OnDeleteOpt::SetDefault => OnDelete::SetDefault,
            OnDeleteOpt::Unspecified | OnDeleteOpt::NoAction => OnDelete::NoAction,
        };
        if on_delete == OnDelete::SetNull && !nullable {
            return Err(Diagnostic::new(
                loc(),
                format!("foreign key `{name}` uses on_delete SET_NULL but cannot be NULL"),
            )
            .hint("make the field nullable (proto3 `optional`) or choose another on_delete"));
        }
        if on_delete == OnDelete::SetDefault && col.default.is_none() && !nullable {
            return Err(Diagnostic::new(
                loc(),
                format!("foreign key `{name}` uses on_delete SET_DEFAULT but has no default"),
            )
            .hint("add `default: \"...\"` or choose another on_delete"));
        }
        let target = short_name(&target).to_owned();
        col = if fo.one_to_one {
            col.one_to_one(target, on_delete)
        } else {
            col.foreign_key(target, on_delete)
        };
    }
    Ok((col, rust))
}

fn parse_default(f: &FieldDescriptor, ty: FieldType, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("not {what}");
    Ok(match ty {
        FieldType::Integer | FieldType::Timestamp => {
            if let Kind::Enum(e) = f.kind() {
                if let Some(v) = e.get_value_by_name(text) {
                    return Ok(Value::Integer(i64::from(v.number())));
                }
            }
            Value::Integer(text.trim().parse().map_err(|_| bad("an integer"))?)
        }
        FieldType::Real => {
            let v: f64 = text.trim().parse().map_err(|_| bad("a number"))?;
            if !v.is_finite() {
                return Err(bad("a finite number"));
            }
            Value::Real(v)
        }
        FieldType::Bool => match text.trim() {
            "true" | "1" => Value::Integer(1),
            "false" | "0" => Value::Integer(0),
            _ => return Err(bad("true or false")),
        },
        FieldType::Text => Value::Text(text.to_owned()),
        FieldType::Date => {
            let d: fluxon_schema::Date = text.parse().map_err(|_| bad("a date YYYY-MM-DD"))?;
            Value::Text(d.as_str().to_owned())
        }
        FieldType::Blob => Value::Blob(parse_hex(text).ok_or_else(|| bad("hex digits"))?),
    })
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim().as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// The declared columns of a model with their fields (the implicit id skipped).
fn columns_of(p: &Pending) -> Vec<(&ColumnMeta, &FieldDescriptor)> {
    let offset = usize::from(p.model.meta.columns.len() > p.column_fields.len());
    p.model.meta.columns[offset..]
        .iter()
        .zip(&p.column_fields)
        .collect()
}

/// Checks that need every model: duplicate tables, key types, `through` models and foreign
/// keys that can never be satisfied.
fn check_across(loaded: &Loaded, pending: &[Pending], diags: &mut Vec<Diagnostic>) {
    let by_name: HashMap<(&str, &str), &Pending> = pending
        .iter()
        .map(|p| ((p.model.package.as_str(), p.model.meta.name.as_str()), p))
        .collect();
    let find = |p: &Pending, name: &str| by_name.get(&(p.model.package.as_str(), name)).copied();

    // Duplicate table names (join tables included), per package schema.
    let mut tables: HashMap<(&str, String), &Pending> = HashMap::new();
    for p in pending {
        let key = (p.model.package.as_str(), p.model.meta.table.clone());
        if let Some(first) = tables.get(&key) {
            diags.push(
                Diagnostic::new(
                    Some(model_opt_loc(loaded, &p.desc)),
                    format!(
                        "models `{}` and `{}` both use table `{}`",
                        first.model.meta.name, p.model.meta.name, p.model.meta.table
                    ),
                )
                .hint("give one of them another name with `option (fluxon.model) = { table: \"...\" };`"),
            );
        } else {
            tables.insert(key, p);
        }
    }
    for p in pending {
        for (rel, f) in p.model.meta.many_to_many.iter().zip(&p.relation_fields) {
            if rel.through.is_some() {
                continue;
            }
            let key = (
                p.model.package.as_str(),
                format!("{}_{}", p.model.meta.table, rel.name),
            );
            if let Some(first) = tables.get(&key) {
                diags.push(
                    Diagnostic::new(
                        Some(field_loc(loaded, f)),
                        format!(
                            "the join table `{}` of `{}.{}` is also the table of model `{}`",
                            key.1, p.model.meta.name, rel.name, first.model.meta.name
                        ),
                    )
                    .hint("rename the relation or the model's table"),
                );
            }
        }
    }

    // Foreign-key types and `through` models.
    for p in pending {
        for (col, f) in columns_of(p) {
            let Some(fk) = &col.foreign_key else { continue };
            let Some(target) = find(p, &fk.model) else {
                continue;
            };
            let pk_ty = target
                .model
                .meta
                .primary_key()
                .map_or(FieldType::Integer, |(_, c)| c.ty);
            if pk_ty != col.ty {
                diags.push(
                    Diagnostic::new(
                        Some(field_loc(loaded, f)),
                        format!(
                            "foreign key `{}` is stored as {:?} but the primary key of `{}` is {:?}",
                            col.name, col.ty, target.model.meta.name, pk_ty
                        ),
                    )
                    .hint("give the field the same type as the referenced primary key (int64 for an implicit id)"),
                );
            }
        }
        for (rel, f) in p.model.meta.many_to_many.iter().zip(&p.relation_fields) {
            let Some(through) = &rel.through else {
                continue;
            };
            let Some(t) = find(p, through) else { continue };
            let fks = |model: &str| {
                t.model
                    .meta
                    .columns
                    .iter()
                    .filter(|c| c.foreign_key.as_ref().is_some_and(|fk| fk.model == model))
                    .count()
            };
            let (source, target) = (p.model.meta.name.as_str(), rel.target.as_str());
            let ok = if source == target {
                fks(source) == 2
            } else {
                fks(source) == 1 && fks(target) == 1
            };
            if !ok {
                diags.push(
                    Diagnostic::new(
                        Some(field_loc(loaded, f)),
                        format!(
                            "through model `{through}` of `{source}.{}` needs exactly one foreign key to `{source}` and one to `{target}` (has {} and {})",
                            rel.name,
                            fks(source),
                            fks(target)
                        ),
                    )
                    .hint(format!(
                        "add to `{through}`: `int64 {} = N [(fluxon.field) = {{ foreign_key: \"{source}\", on_delete: CASCADE }}];` and likewise for `{target}`",
                        source.to_snake_case()
                    )),
                );
            }
        }
    }

    // A cycle of NOT NULL foreign keys (a required self-reference included) can never be
    // satisfied: no first row can be inserted.
    let mut edges: Edges<'_> = BTreeMap::new();
    for p in pending {
        for (col, f) in columns_of(p) {
            if let Some(fk) = &col.foreign_key {
                if !col.nullable && find(p, &fk.model).is_some() {
                    edges
                        .entry((p.model.package.as_str(), p.model.meta.name.as_str()))
                        .or_default()
                        .push((fk.model.as_str(), f, col.name.as_str()));
                }
            }
        }
    }
    let mut reported = HashSet::new();
    for (&(package, start), out) in &edges {
        for &(next, f, col) in out {
            if let Some(path) = cycle_path(&edges, package, next, start) {
                let key = {
                    let mut k = path.clone();
                    k.push(start);
                    k.sort_unstable();
                    k
                };
                if !reported.insert((package, key)) {
                    continue;
                }
                let what = if next == start {
                    format!("foreign key `{col}` of `{start}` refers to `{start}` itself and cannot be NULL")
                } else {
                    format!(
                        "foreign key `{col}` of `{start}` closes a cycle of required references ({start} -> {} -> {start})",
                        path.join(" -> ")
                    )
                };
                diags.push(
                    Diagnostic::new(Some(field_loc(loaded, f)), format!("{what}: no first row can ever be inserted"))
                        .hint("make the reference nullable (proto3 `optional`), e.g. a root directory has no parent; consider on_delete: SET_NULL or CASCADE"),
                );
            }
        }
    }
}

/// Required foreign keys: (package, model) to (target model, field, column name).
type Edges<'a> = BTreeMap<(&'a str, &'a str), Vec<(&'a str, &'a FieldDescriptor, &'a str)>>;

/// A path of required references from `from` back to `goal`, if any.
fn cycle_path<'a>(
    edges: &Edges<'a>,
    package: &'a str,
    from: &'a str,
    goal: &'a str,
) -> Option<Vec<&'a str>> {
    let mut stack = vec![(from, vec![from])];
    let mut seen = HashSet::new();
    while let Some((node, path)) = stack.pop() {
        if node == goal {
            let mut path = path;
            path.pop();
            return Some(path);
        }
        if !seen.insert(node) {
            continue;
        }
        for &(next, _, _) in edges.get(&(package, node)).map_or(&[][..], Vec::as_slice) {
            let mut p = path.clone();
            p.push(next);
            stack.push((next, p));
        }
    }
    None
}
