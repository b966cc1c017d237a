//! Fluxon's option values, read from the descriptors' extensions (see `fluxon/options.proto`).

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, MessageDescriptor,
    MethodDescriptor, ServiceDescriptor, Value,
};

/// `(fluxon.model)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelOpts {
    pub(crate) table: String,
    pub(crate) authorized_user: bool,
    pub(crate) unique: Vec<Vec<String>>,
    pub(crate) index: Vec<Vec<String>>,
}

/// `(fluxon.field).on_delete`, numbered as in `options.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OnDeleteOpt {
    #[default]
    Unspecified,
    Cascade,
    SetNull,
    Restrict,
    SetDefault,
    NoAction,
}

/// `(fluxon.field)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldOpts {
    pub(crate) primary_key: bool,
    pub(crate) max_length: Option<u32>,
    pub(crate) unique: bool,
    pub(crate) nullable: bool,
    pub(crate) default: Option<String>,
    pub(crate) foreign_key: String,
    pub(crate) on_delete: OnDeleteOpt,
    pub(crate) one_to_one: bool,
    pub(crate) many_to_many: String,
    pub(crate) through: String,
    pub(crate) auto_now_add: bool,
    pub(crate) auto_now: bool,
    pub(crate) index: bool,
    pub(crate) password: bool,
    pub(crate) date: bool,
}

/// `(fluxon.service)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServiceOpts {
    pub(crate) reverse: bool,
}

/// `(fluxon.method)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MethodOpts {
    pub(crate) requires_login: bool,
    pub(crate) idempotent: bool,
}

/// The extension descriptors of the pool (absent when no file imports `fluxon/options.proto`).
pub(crate) struct Extensions {
    model: Option<ExtensionDescriptor>,
    field: Option<ExtensionDescriptor>,
    service: Option<ExtensionDescriptor>,
    method: Option<ExtensionDescriptor>,
}

fn read(options: &DynamicMessage, ext: Option<&ExtensionDescriptor>) -> Option<DynamicMessage> {
    let ext = ext?;
    if !options.has_extension(ext) {
        return None;
    }
    options.get_extension(ext).as_message().cloned()
}

fn flag(m: &DynamicMessage, name: &str) -> bool {
    m.get_field_by_name(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn text(m: &DynamicMessage, name: &str) -> String {
    m.get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn column_groups(m: &DynamicMessage, name: &str) -> Vec<Vec<String>> {
    let Some(value) = m.get_field_by_name(name) else {
        return Vec::new();
    };
    let Some(list) = value.as_list() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(Value::as_message)
        .map(|group| {
            group
                .get_field_by_name("columns")
                .and_then(|v| {
                    v.as_list().map(|cols| {
                        cols.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default()
        })
        .collect()
}

impl Extensions {
    pub(crate) fn new(pool: &DescriptorPool) -> Self {
        Self {
            model: pool.get_extension_by_name("fluxon.model"),
            field: pool.get_extension_by_name("fluxon.field"),
            service: pool.get_extension_by_name("fluxon.service"),
            method: pool.get_extension_by_name("fluxon.method"),
        }
    }

    /// The model options, when the message is a model.
    pub(crate) fn model(&self, msg: &MessageDescriptor) -> Option<ModelOpts> {
        let m = read(&msg.options(), self.model.as_ref())?;
        Some(ModelOpts {
            table: text(&m, "table"),
            authorized_user: flag(&m, "authorized_user"),
            unique: column_groups(&m, "unique"),
            index: column_groups(&m, "index"),
        })
    }

    /// The field options (all unset when absent).
    pub(crate) fn field(&self, field: &FieldDescriptor) -> FieldOpts {
        let Some(m) = read(&field.options(), self.field.as_ref()) else {
            return FieldOpts::default();
        };
        let on_delete = match m
            .get_field_by_name("on_delete")
            .and_then(|v| v.as_enum_number())
        {
            Some(1) => OnDeleteOpt::Cascade,
            Some(2) => OnDeleteOpt::SetNull,
            Some(3) => OnDeleteOpt::Restrict,
            Some(4) => OnDeleteOpt::SetDefault,
            Some(5) => OnDeleteOpt::NoAction,
            _ => OnDeleteOpt::Unspecified,
        };
        FieldOpts {
            primary_key: flag(&m, "primary_key"),
            max_length: m
                .has_field_by_name("max_length")
                .then(|| m.get_field_by_name("max_length").and_then(|v| v.as_u32()))
                .flatten(),
            unique: flag(&m, "unique"),
            nullable: flag(&m, "nullable"),
            default: m.has_field_by_name("default").then(|| text(&m, "default")),
            foreign_key: text(&m, "foreign_key"),
            on_delete,
            one_to_one: flag(&m, "one_to_one"),
            many_to_many: text(&m, "many_to_many"),
            through: text(&m, "through"),
            auto_now_add: flag(&m, "auto_now_add"),
            auto_now: flag(&m, "auto_now"),
            index: flag(&m, "index"),
            password: flag(&m, "password"),
            date: flag(&m, "date"),
        }
    }

    /// The service options (all unset when absent).
    pub(crate) fn service(&self, svc: &ServiceDescriptor) -> ServiceOpts {
        read(&svc.options(), self.service.as_ref())
            .map(|m| ServiceOpts {
                reverse: flag(&m, "reverse"),
            })
            .unwrap_or_default()
    }

    /// The method options (all unset when absent).
    pub(crate) fn method(&self, method: &MethodDescriptor) -> MethodOpts {
        read(&method.options(), self.method.as_ref())
            .map(|m| MethodOpts {
                requires_login: flag(&m, "requires_login"),
                idempotent: flag(&m, "idempotent"),
            })
            .unwrap_or_default()
    }

    /// Whether `field` carries `(fluxon.field)` at all.
    pub(crate) fn has_field_options(&self, field: &FieldDescriptor) -> bool {
        read(&field.options(), self.field.as_ref()).is_some()
    }
}
