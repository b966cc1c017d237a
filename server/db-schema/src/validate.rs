//! Consistency checks of model metadata.

use std::collections::HashSet;

use crate::{find_model, FieldType, ModelMeta, OnDelete};

/// Inconsistent model metadata. Each variant names the model (and column) concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A model, table or column name is empty, contains NUL, or uses a reserved prefix.
    #[error("model {model}: invalid name {name:?} (empty, contains NUL, or starts with sqlite_/_fluxon)")]
    InvalidName {
        /// The model concerned.
        model: String,
        /// The offending name.
        name: String,
    },
    /// Two models share a name.
    #[error("duplicate model name {0}")]
    DuplicateModel(String),
    /// Two models (or a join table) share a table name.
    #[error("duplicate table name {0}")]
    DuplicateTable(String),
    /// Two columns or relations of one model share a name.
    #[error("model {model}: duplicate column {column}")]
    DuplicateColumn {
        /// The model concerned.
        model: String,
        /// The duplicated name.
        column: String,
    },
    /// Two fields of one model share a protobuf field number.
    #[error("model {model}: duplicate field number {number}")]
    DuplicateFieldNumber {
        /// The model concerned.
        model: String,
        /// The duplicated number.
        number: u32,
    },
    /// More than one column is marked primary key.
    #[error("model {0}: more than one primary key")]
    MultiplePrimaryKeys(String),
    /// A primary key column is nullable.
    #[error("model {model}: primary key {column} cannot be nullable")]
    NullablePrimaryKey {
        /// The model concerned.
        model: String,
        /// The column.
        column: String,
    },
    /// A column option does not fit the column's type.
    #[error("model {model}: column {column}: {problem}")]
    BadColumn {
        /// The model concerned.
        model: String,
        /// The column.
        column: String,
        /// What is wrong.
        problem: String,
    },
    /// A foreign key, many-to-many or `through` names a model that does not exist.
    #[error("model {model}: {field} refers to unknown model {target}")]
    UnknownModel {
        /// The model concerned.
        model: String,
        /// The field or relation.
        field: String,
        /// The missing model.
        target: String,
    },
    /// A `through` model lacks a foreign key to one side of the relation.
    #[error(
        "model {model}: many-to-many {field} through {through} needs one foreign key to {missing}"
    )]
    BadThrough {
        /// The model concerned.
        model: String,
        /// The relation.
        field: String,
        /// The through model.
        through: String,
        /// The side with no (or an ambiguous) foreign key.
        missing: String,
    },
    /// An index names a column the model lacks.
    #[error("model {model}: index on unknown column {column}")]
    UnknownIndexColumn {
        /// The model concerned.
        model: String,
        /// The missing column.
        column: String,
    },
    /// An authorized-user model needs exactly one password column.
    #[error("model {0}: an authorized user needs exactly one password column")]
    AuthorizedUserPassword(String),
}

fn check_name(model: &str, name: &str) -> Result<(), SchemaError> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || name.contains('\0')
        || lower.starts_with("sqlite_")
        || lower.starts_with("_fluxon")
    {
        return Err(SchemaError::InvalidName {
            model: model.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Validates `models` and returns them normalized (implicit `id` added where needed).
pub fn validate(models: &[ModelMeta]) -> Result<Vec<ModelMeta>, SchemaError> {
    let models: Vec<ModelMeta> = models.iter().cloned().map(ModelMeta::normalized).collect();
    let mut names = HashSet::new();
    let mut tables = HashSet::new();
    for m in &models {
        check_name(&m.name, &m.name)?;
        check_name(&m.name, &m.table)?;
        if !names.insert(m.name.as_str()) {
            return Err(SchemaError::DuplicateModel(m.name.clone()));
        }
        if !tables.insert(m.table.clone()) {
            return Err(SchemaError::DuplicateTable(m.table.clone()));
        }
    }
    for m in &models {
        validate_model(m, &models)?;
        for rel in m.many_to_many.iter().filter(|r| r.through.is_none()) {
            let join = format!("{}_{}", m.table, rel.name);
            if !tables.insert(join.clone()) {
                return Err(SchemaError::DuplicateTable(join));
            }
        }
    }
    Ok(models)
}

fn bad(m: &ModelMeta, column: &str, problem: &str) -> SchemaError {
    SchemaError::BadColumn {
        model: m.name.clone(),
        column: column.to_owned(),
        problem: problem.to_owned(),
    }
}

fn validate_model(m: &ModelMeta, models: &[ModelMeta]) -> Result<(), SchemaError> {
    let mut seen = HashSet::new();
    let mut numbers = HashSet::new();
    let field_names = m
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.field_number))
        .chain(
            m.many_to_many
                .iter()
                .map(|r| (r.name.as_str(), r.field_number)),
        );
    for (name, number) in field_names {
        check_name(&m.name, name)?;
        if !seen.insert(name) {
            return Err(SchemaError::DuplicateColumn {
                model: m.name.clone(),
                column: name.to_owned(),
            });
        }
        if number != 0 && !numbers.insert(number) {
            return Err(SchemaError::DuplicateFieldNumber {
                model: m.name.clone(),
                number,
            });
        }
    }
    if m.columns.iter().filter(|c| c.primary_key).count() > 1 {
        return Err(SchemaError::MultiplePrimaryKeys(m.name.clone()));
    }
    let passwords = m.columns.iter().filter(|c| c.password).count();
    if m.authorized_user && passwords != 1 {
        return Err(SchemaError::AuthorizedUserPassword(m.name.clone()));
    }
    for c in &m.columns {
        if c.primary_key && c.nullable {
            return Err(SchemaError::NullablePrimaryKey {
                model: m.name.clone(),
                column: c.name.clone(),
            });
        }
        if c.max_length.is_some() && c.ty != FieldType::Text {
            return Err(bad(m, &c.name, "max_length needs a text column"));
        }
        if c.password && c.ty != FieldType::Text {
            return Err(bad(m, &c.name, "a password column must be text"));
        }
        if (c.auto_now || c.auto_now_add) && c.ty != FieldType::Timestamp {
            return Err(bad(
                m,
                &c.name,
                "auto_now/auto_now_add need a timestamp column",
            ));
        }
        if let Some(fk) = &c.foreign_key {
            let Some(target) = find_model(models, &fk.model) else {
                return Err(SchemaError::UnknownModel {
                    model: m.name.clone(),
                    field: c.name.clone(),
                    target: fk.model.clone(),
                });
            };
            if let Some((_, pk)) = target.primary_key() {
                if pk.ty != c.ty {
                    return Err(bad(
                        m,
                        &c.name,
                        "type differs from the referenced primary key",
                    ));
                }
            }
            if fk.on_delete == OnDelete::SetNull && !c.nullable {
                return Err(bad(
                    m,
                    &c.name,
                    "on_delete SET_NULL needs a nullable column",
                ));
            }
            if fk.on_delete == OnDelete::SetDefault && c.default.is_none() && !c.nullable {
                return Err(bad(m, &c.name, "on_delete SET_DEFAULT needs a default"));
            }
        }
    }
    for idx in &m.indexes {
        for col in &idx.columns {
            if m.column_named(col).is_none() {
                return Err(SchemaError::UnknownIndexColumn {
                    model: m.name.clone(),
                    column: col.clone(),
                });
            }
        }
    }
    for rel in &m.many_to_many {
        let unknown = |target: &str| SchemaError::UnknownModel {
            model: m.name.clone(),
            field: rel.name.clone(),
            target: target.to_owned(),
        };
        find_model(models, &rel.target).ok_or_else(|| unknown(&rel.target))?;
        if let Some(through) = &rel.through {
            let t = find_model(models, through).ok_or_else(|| unknown(through))?;
            through_columns(t, &m.name, &rel.target).map_err(|missing| {
                SchemaError::BadThrough {
                    model: m.name.clone(),
                    field: rel.name.clone(),
                    through: through.clone(),
                    missing,
                }
            })?;
        }
    }
    Ok(())
}

/// The through model's columns pointing at `source` and at `target`, in that order. For a
/// self-referencing relation the first such column is the source and the second the target.
pub fn through_columns<'t>(
    through: &'t ModelMeta,
    source: &str,
    target: &str,
) -> Result<(&'t str, &'t str), String> {
    let fks = |model: &str| -> Vec<&'t str> {
        through
            .columns
            .iter()
            .filter(|c| c.foreign_key.as_ref().is_some_and(|f| f.model == model))
            .map(|c| c.name.as_str())
            .collect()
    };
    let from = fks(source);
    if source == target {
        return match from.as_slice() {
            [a, b] => Ok((a, b)),
            _ => Err(source.to_owned()),
        };
    }
    let to = fks(target);
    match (from.as_slice(), to.as_slice()) {
        ([a], [b]) => Ok((a, b)),
        ([_], _) => Err(target.to_owned()),
        _ => Err(source.to_owned()),
    }
}
