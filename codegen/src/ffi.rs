//! Emitting the uniffi glue of a package (`build_uniffi(true)`): a `pub mod ffi` appended to the
//! package's module with a `#[derive(uniffi::Record)]` per message reachable from its services,
//! a `#[derive(uniffi::Enum)]` per enum, a `<Service>Client` object per service and, per reverse
//! service, a foreign trait `<Service>Handler`, its error type and a `<service>_service`
//! function. The shape is documented in `docs/clients.md`; the generic side is
//! `fluxon-bindings`. Messages and enums of Fluxon's `fluxon/storage.proto` (a reply's
//! `fluxon.storage.Grant`) are not generated again: they map to `fluxon-bindings`' own records
//! (`Grant`, `StorageEntry`) and enums (`StorageOp`, `StorageEntryKind`).

use std::collections::BTreeMap;

use heck::{ToSnakeCase as _, ToUpperCamelCase as _};
use proc_macro2::TokenStream;
use prost_reflect::{EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use quote::{format_ident, quote};

use crate::error::Diagnostic;
use crate::load::Loaded;
use crate::rust::ident;
use crate::service::{Method, Service, Shape};

/// Names the generic `fluxon` namespace exports: Swift compiles both namespaces into one
/// module, so an application type must not reuse them.
const GENERIC_NAMES: &[&str] = &[
    "FluxonClient",
    "FluxonError",
    "Trust",
    "ConnectOptions",
    "CallOptions",
    "SessionInfo",
    "ReverseService",
    "RawReverseHandler",
    "CloudStorage",
    "TransferProgress",
    "UploadReceipt",
    "DownloadReceipt",
    "Grant",
    "StorageEntry",
    "StorageEntryKind",
    "StorageOp",
];

/// The package of Fluxon's cloud-storage messages (`fluxon/storage.proto`).
const STORAGE_PACKAGE: &str = "fluxon.storage";

/// The `fluxon-bindings` type a `fluxon.storage` message or enum maps to (converted with the
/// same `Into` / `from_number` / `number` shape as the application's own types), or `None` for
/// the storage stream's own headers, which applications have no use for.
fn storage_type(full_name: &str) -> Option<TokenStream> {
    Some(match full_name {
        "fluxon.storage.Grant" => quote!(fluxon_bindings::Grant),
        "fluxon.storage.Entry" => quote!(fluxon_bindings::StorageEntry),
        "fluxon.storage.Op" => quote!(fluxon_bindings::StorageOp),
        "fluxon.storage.EntryKind" => quote!(fluxon_bindings::StorageEntryKind),
        _ => return None,
    })
}

/// The record type of an rpc's request or reply message.
fn message_type(m: &MessageDescriptor, package: &str) -> TokenStream {
    if let Some(t) = storage_type(m.full_name()) {
        return t;
    }
    let name = format_ident!("{}", ffi_name(m.full_name(), package));
    quote!(#name)
}

/// The prost type of an rpc's request or reply message, as seen from `ffi`.
fn message_prost(m: &MessageDescriptor, package: &str) -> TokenStream {
    if m.package_name() == STORAGE_PACKAGE {
        let name = ident(&m.name().to_upper_camel_case());
        return quote!(::fluxon_proto::storage::#name);
    }
    prost_path(m.full_name(), package)
}

/// The uniffi name of a message or enum: nested names joined (`Outer.Inner` → `OuterInner`).
fn ffi_name(full_name: &str, package: &str) -> String {
    let local = full_name
        .strip_prefix(package)
        .map(|s| s.trim_start_matches('.'))
        .unwrap_or(full_name);
    local
        .split('.')
        .map(|s| s.to_upper_camel_case())
        .collect::<String>()
}

/// The prost path of a message or enum of `package` as seen from `ffi` inside its module.
fn prost_path(full_name: &str, package: &str) -> TokenStream {
    let local = full_name
        .strip_prefix(package)
        .map(|s| s.trim_start_matches('.'))
        .unwrap_or(full_name);
    let parts: Vec<&str> = local.split('.').collect();
    let (last, outer) = parts.split_last().unwrap_or((&"", &[]));
    let outer = outer.iter().map(|o| ident(&o.to_snake_case()));
    let last = ident(&last.to_upper_camel_case());
    quote!(super::#(#outer::)*#last)
}

fn doc(text: Option<String>) -> TokenStream {
    let Some(text) = text else {
        return TokenStream::new();
    };
    let lines = text.lines().map(|l| {
        let l = if l.is_empty() {
            String::new()
        } else {
            format!(" {l}")
        };
        quote!(#[doc = #l])
    });
    quote!(#(#lines)*)
}

/// What the glue does with one value of a field's kind.
enum Value {
    /// Same type on both sides.
    Same(TokenStream),
    /// An enum: `i32` in prost, the uniffi enum in the record.
    Enum(TokenStream),
    /// A message of this package: converted with `Into`.
    Message(TokenStream),
    /// A well-known type converted by `fluxon_bindings::glue` functions.
    Wkt {
        ty: TokenStream,
        to_ffi: TokenStream,
        to_prost: TokenStream,
    },
}

impl Value {
    fn ty(&self) -> TokenStream {
        match self {
            Self::Same(t) | Self::Enum(t) | Self::Message(t) | Self::Wkt { ty: t, .. } => t.clone(),
        }
    }

    /// A function path converting prost → record, or `None` when no conversion is needed.
    fn to_ffi(&self) -> Option<TokenStream> {
        match self {
            Self::Same(_) => None,
            Self::Enum(t) => Some(quote!(#t::from_number)),
            Self::Message(_) => Some(quote!(Into::into)),
            Self::Wkt { to_ffi, .. } => Some(to_ffi.clone()),
        }
    }

    /// A function path converting record → prost.
    fn to_prost(&self) -> Option<TokenStream> {
        match self {
            Self::Same(_) => None,
            Self::Enum(t) => Some(quote!(#t::number)),
            Self::Message(_) => Some(quote!(Into::into)),
            Self::Wkt { to_prost, .. } => Some(to_prost.clone()),
        }
    }
}

struct Ctx<'a> {
    loaded: &'a Loaded,
    package: &'a str,
    diags: Vec<Diagnostic>,
    messages: BTreeMap<String, MessageDescriptor>,
    enums: BTreeMap<String, EnumDescriptor>,
}

impl Ctx<'_> {
    fn fail(&mut self, file: &str, path: &[i32], message: String) {
        let loc = Some(self.loaded.locate(file, &[path]));
        self.diags.push(
            Diagnostic::new(loc, message)
                .hint("the uniffi glue (build_uniffi) does not map this yet; use another type or leave the service out of the bindings"),
        );
    }

    /// The value mapping of a (non-map) kind, collecting reachable messages and enums.
    fn value(&mut self, kind: &Kind, field: &FieldDescriptor) -> Option<Value> {
        Some(match kind {
            Kind::Double => Value::Same(quote!(f64)),
            Kind::Float => Value::Same(quote!(f32)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::Same(quote!(i32)),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::Same(quote!(i64)),
            Kind::Uint32 | Kind::Fixed32 => Value::Same(quote!(u32)),
            Kind::Uint64 | Kind::Fixed64 => Value::Same(quote!(u64)),
            Kind::Bool => Value::Same(quote!(bool)),
            Kind::String => Value::Same(quote!(String)),
            Kind::Bytes => Value::Same(quote!(Vec<u8>)),
            Kind::Enum(e) => {
                if e.package_name() == STORAGE_PACKAGE {
                    let Some(t) = storage_type(e.full_name()) else {
                        self.storage_header(field, e.full_name());
                        return None;
                    };
                    return Some(Value::Enum(t));
                }
                if e.package_name() != self.package {
                    self.foreign_package(field, e.full_name());
                    return None;
                }
                let name = format_ident!("{}", ffi_name(e.full_name(), self.package));
                self.enums.insert(e.full_name().to_owned(), e.clone());
                Value::Enum(quote!(#name))
            }
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => Value::Wkt {
                    ty: quote!(std::time::SystemTime),
                    to_ffi: quote!(fluxon_bindings::glue::system_time),
                    to_prost: quote!(fluxon_bindings::glue::timestamp),
                },
                "google.protobuf.Duration" => Value::Wkt {
                    ty: quote!(std::time::Duration),
                    to_ffi: quote!(fluxon_bindings::glue::duration),
                    to_prost: quote!(fluxon_bindings::glue::proto_duration),
                },
                "google.protobuf.StringValue" => Value::Same(quote!(String)),
                "google.protobuf.BytesValue" => Value::Same(quote!(Vec<u8>)),
                "google.protobuf.BoolValue" => Value::Same(quote!(bool)),
                "google.protobuf.Int32Value" => Value::Same(quote!(i32)),
                "google.protobuf.Int64Value" => Value::Same(quote!(i64)),
                "google.protobuf.UInt32Value" => Value::Same(quote!(u32)),
                "google.protobuf.UInt64Value" => Value::Same(quote!(u64)),
                "google.protobuf.FloatValue" => Value::Same(quote!(f32)),
                "google.protobuf.DoubleValue" => Value::Same(quote!(f64)),
                other if other.starts_with("google.protobuf.") => {
                    let file = field.parent_file();
                    self.fail(
                        file.name(),
                        field.path(),
                        format!("field `{}` has type `{other}`", field.full_name()),
                    );
                    return None;
                }
                _ if m.package_name() == STORAGE_PACKAGE => {
                    let Some(t) = storage_type(m.full_name()) else {
                        self.storage_header(field, m.full_name());
                        return None;
                    };
                    Value::Message(t)
                }
                _ => {
                    if m.package_name() != self.package {
                        self.foreign_package(field, m.full_name());
                        return None;
                    }
                    let name = format_ident!("{}", ffi_name(m.full_name(), self.package));
                    self.reach(m);
                    Value::Message(quote!(#name))
                }
            },
        })
    }

    fn foreign_package(&mut self, field: &FieldDescriptor, type_name: &str) {
        let file = field.parent_file();
        let package = self.package.to_owned();
        self.fail(
            file.name(),
            field.path(),
            format!(
                "field `{}` uses `{type_name}` from another package than `{package}`",
                field.full_name()
            ),
        );
    }

    fn storage_header(&mut self, field: &FieldDescriptor, type_name: &str) {
        let file = field.parent_file();
        self.fail(
            file.name(),
            field.path(),
            format!(
                "field `{}` uses `{type_name}`, a header of the storage stream itself (of `fluxon.storage`, only Grant, Entry, Op and EntryKind are mapped)",
                field.full_name()
            ),
        );
    }

    /// A oneof of `m` (record `record`) as one record field holding an enum with a variant per
    /// member (`value` its content), with both conversions to prost's oneof enum.
    fn oneof(
        &mut self,
        m: &MessageDescriptor,
        o: &prost_reflect::OneofDescriptor,
        record: &str,
    ) -> Option<Oneof> {
        let field = ident(&o.name().to_snake_case());
        let enum_name = format_ident!("{record}{}", o.name().to_upper_camel_case());
        // prost puts a message's oneof enums in the message's module.
        let local = m
            .full_name()
            .strip_prefix(self.package)
            .map(|s| s.trim_start_matches('.'))
            .unwrap_or(m.full_name());
        let module = local.split('.').map(|p| ident(&p.to_snake_case()));
        let prost_enum = ident(&o.name().to_upper_camel_case());
        let prost_enum = quote!(super::#(#module::)*#prost_enum);
        let docs = doc(self.loaded.comments(m.parent_file().name(), o.path()));
        let (mut variants, mut to_ffi, mut to_prost) = (Vec::new(), Vec::new(), Vec::new());
        for f in o.fields() {
            let kind = f.kind();
            let v = self.value(&kind, &f)?;
            let t = v.ty();
            let variant = ident(&f.name().to_upper_camel_case());
            let field_docs = doc(self.loaded.comments(f.parent_file().name(), f.path()));
            let (a, b) = match (v.to_ffi(), v.to_prost()) {
                (Some(a), Some(b)) => (quote!(#a(v)), quote!(#b(value))),
                _ => (quote!(v), quote!(value)),
            };
            variants.push(quote!(#field_docs #variant { value: #t },));
            to_ffi.push(quote!(#prost_enum::#variant(v) => #enum_name::#variant { value: #a },));
            to_prost.push(quote!(#enum_name::#variant { value } => #prost_enum::#variant(#b),));
        }
        Some(Oneof {
            field: quote!(#docs #[uniffi(default)] pub #field: Option<#enum_name>,),
            to_ffi: quote!(#field: m.#field.map(|o| match o { #(#to_ffi)* }),),
            to_prost: quote!(#field: r.#field.map(|o| match o { #(#to_prost)* }),),
            enumeration: quote! {
                #docs
                #[derive(Debug, Clone, PartialEq, uniffi::Enum)]
                pub enum #enum_name {
                    #(#variants)*
                }
            },
        })
    }

    /// Records `m` and everything its fields reach.
    fn reach(&mut self, m: &MessageDescriptor) {
        if m.full_name() == "google.protobuf.Empty" || self.messages.contains_key(m.full_name()) {
            return;
        }
        self.messages.insert(m.full_name().to_owned(), m.clone());
        for f in m.fields() {
            if f.is_map() {
                if let Kind::Message(entry) = f.kind() {
                    for sub in entry.fields() {
                        let kind = sub.kind();
                        let _ = self.value(&kind, &f);
                    }
                }
            } else {
                let kind = f.kind();
                let _ = self.value(&kind, &f);
            }
        }
    }

    /// The record field and both conversions of field `f`.
    fn field(&mut self, f: &FieldDescriptor) -> Option<(TokenStream, TokenStream, TokenStream)> {
        let name = ident(&f.name().to_snake_case());
        let docs = doc(self.loaded.comments(f.parent_file().name(), f.path()));
        if f.containing_oneof().is_some_and(|o| !o.is_synthetic()) {
            // A member of a oneof: the record holds the oneof as one enum (`Ctx::oneof`).
            return None;
        }
        if f.is_map() {
            let Kind::Message(entry) = f.kind() else {
                return None;
            };
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            let k = self.value(&key.kind(), f)?;
            let v = self.value(&value.kind(), f)?;
            let (kt, vt) = (k.ty(), v.ty());
            let (to_ffi, to_prost) = match (v.to_ffi(), v.to_prost()) {
                (Some(a), Some(b)) => (
                    quote!(m.#name.into_iter().map(|(k, v)| (k, #a(v))).collect()),
                    quote!(r.#name.into_iter().map(|(k, v)| (k, #b(v))).collect()),
                ),
                _ => (
                    quote!(m.#name.into_iter().collect()),
                    quote!(r.#name.into_iter().collect()),
                ),
            };
            return Some((
                quote!(#docs #[uniffi(default)] pub #name: std::collections::HashMap<#kt, #vt>,),
                quote!(#name: #to_ffi,),
                quote!(#name: #to_prost,),
            ));
        }
        let kind = f.kind();
        let v = self.value(&kind, f)?;
        let t = v.ty();
        let wrapper = matches!(&kind, Kind::Message(m) if m.full_name().starts_with("google.protobuf.") && m.full_name().ends_with("Value"));
        let optional = f.supports_presence() && !f.is_list();
        let (ty, to_ffi, to_prost) = if f.is_list() {
            match (v.to_ffi(), v.to_prost()) {
                (Some(a), Some(b)) => (
                    quote!(Vec<#t>),
                    quote!(m.#name.into_iter().map(#a).collect()),
                    quote!(r.#name.into_iter().map(#b).collect()),
                ),
                _ => (quote!(Vec<#t>), quote!(m.#name), quote!(r.#name)),
            }
        } else if optional || wrapper {
            match (v.to_ffi(), v.to_prost()) {
                (Some(a), Some(b)) => (
                    quote!(Option<#t>),
                    quote!(m.#name.map(#a)),
                    quote!(r.#name.map(#b)),
                ),
                _ => (quote!(Option<#t>), quote!(m.#name), quote!(r.#name)),
            }
        } else {
            match (v.to_ffi(), v.to_prost()) {
                (Some(a), Some(b)) => (t.clone(), quote!(#a(m.#name)), quote!(#b(r.#name))),
                _ => (t.clone(), quote!(m.#name), quote!(r.#name)),
            }
        };
        // Every field but a plain enum has its protobuf default in the foreign languages too
        // (empty, zero, false, none), so a record is built naming only what it sets. An enum's
        // zero value has no name uniffi's default can take.
        let default = if matches!(kind, Kind::Enum(_)) && !(f.is_list() || optional) {
            quote!()
        } else {
            quote!(#[uniffi(default)])
        };
        Some((
            quote!(#docs #default pub #name: #ty,),
            quote!(#name: #to_ffi,),
            quote!(#name: #to_prost,),
        ))
    }
}

/// A oneof as a record field, its conversions and its enum.
struct Oneof {
    field: TokenStream,
    to_ffi: TokenStream,
    to_prost: TokenStream,
    enumeration: TokenStream,
}

fn record(ctx: &mut Ctx<'_>, m: &MessageDescriptor) -> TokenStream {
    let name = format_ident!("{}", ffi_name(m.full_name(), ctx.package));
    let prost = prost_path(m.full_name(), ctx.package);
    let docs = doc(ctx.loaded.comments(m.parent_file().name(), m.path()));
    let mut fields = Vec::new();
    let mut to_ffi = Vec::new();
    let mut to_prost = Vec::new();
    for f in m.fields() {
        if let Some((decl, a, b)) = ctx.field(&f) {
            fields.push(decl);
            to_ffi.push(a);
            to_prost.push(b);
        }
    }
    let mut oneof_enums = Vec::new();
    for o in m.oneofs().filter(|o| !o.is_synthetic()) {
        if let Some(oneof) = ctx.oneof(m, &o, &name.to_string()) {
            fields.push(oneof.field);
            to_ffi.push(oneof.to_ffi);
            to_prost.push(oneof.to_prost);
            oneof_enums.push(oneof.enumeration);
        }
    }
    let (m_var, r_var) = if fields.is_empty() {
        (quote!(_m), quote!(_r))
    } else {
        (quote!(m), quote!(r))
    };
    quote! {
        #docs
        #[derive(Debug, Clone, PartialEq, uniffi::Record)]
        pub struct #name {
            #(#fields)*
        }

        impl From<#prost> for #name {
            fn from(#m_var: #prost) -> Self {
                Self { #(#to_ffi)* }
            }
        }

        impl From<#name> for #prost {
            fn from(#r_var: #name) -> Self {
                Self { #(#to_prost)* }
            }
        }

        #(#oneof_enums)*
    }
}

fn enumeration(ctx: &Ctx<'_>, e: &EnumDescriptor) -> TokenStream {
    let name_str = ffi_name(e.full_name(), ctx.package);
    let name = format_ident!("{}", name_str);
    let docs = doc(ctx.loaded.comments(e.parent_file().name(), e.path()));
    let enum_camel = e.name().to_upper_camel_case();
    let mut seen = std::collections::HashSet::new();
    let mut variants = Vec::new();
    for v in e.values() {
        if !seen.insert(v.number()) {
            continue;
        }
        let camel = v.name().to_upper_camel_case();
        let stripped = camel
            .strip_prefix(&enum_camel)
            .filter(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            .unwrap_or(&camel)
            .to_owned();
        let vdocs = doc(ctx.loaded.comments(e.parent_file().name(), v.path()));
        let number = proc_macro2::Literal::i32_unsuffixed(v.number());
        variants.push((format_ident!("{}", stripped), number, vdocs));
    }
    let zero = variants
        .iter()
        .find(|(_, n, _)| n.to_string() == "0")
        .or(variants.first())
        .map(|(i, _, _)| i.clone());
    let decls = variants.iter().map(|(i, _, d)| quote!(#d #i,));
    let from = variants
        .iter()
        .filter(|(i, _, _)| Some(i) != zero.as_ref())
        .map(|(i, n, _)| quote!(#n => Self::#i,));
    let to = variants.iter().map(|(i, n, _)| quote!(Self::#i => #n,));
    quote! {
        #docs
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
        pub enum #name {
            #(#decls)*
        }

        impl #name {
            /// The value with protobuf number `number`; unknown numbers become the zero value.
            pub fn from_number(number: i32) -> Self {
                match number {
                    #(#from)*
                    _ => Self::#zero,
                }
            }

            /// The protobuf number.
            pub fn number(self) -> i32 {
                match self {
                    #(#to)*
                }
            }
        }
    }
}

fn is_empty(m: &MessageDescriptor) -> bool {
    m.full_name() == "google.protobuf.Empty"
}

fn client(ctx: &mut Ctx<'_>, s: &Service) -> TokenStream {
    let name = format_ident!("{}Client", s.name);
    let docs = doc(s.doc.clone());
    // A server-streaming method returns a stream object (`next()`, `cancel()`); a
    // client-streaming or bidirectional one a call object (`send()`, `finish()`, ...).
    let mut streams: Vec<TokenStream> = Vec::new();
    let mut calls: Vec<TokenStream> = Vec::new();
    for m in &s.methods {
        match m.shape {
            Shape::Unary => {}
            Shape::ServerStreaming => streams.push(server_stream(ctx, s, m)),
            Shape::ClientStreaming | Shape::Bidirectional => {
                let (method, object) = streaming_call(ctx, s, m);
                calls.push(method);
                streams.push(object);
            }
        }
    }
    let unary = s
        .methods
        .iter()
        .filter(|m| matches!(m.shape, Shape::Unary | Shape::ServerStreaming));
    let methods = unary.map(|m| {
        let method = ident(&m.rust_name);
        let with = format_ident!("{}_with", m.rust_name);
        let mdocs = doc(m.doc.clone());
        let (param, arg) = if is_empty(&m.input) {
            (quote!(), quote!(()))
        } else {
            let t = message_type(&m.input, ctx.package);
            (quote!(request: #t,), quote!(request.into()))
        };
        // `exit_safe`: the runtime threads that wake the call reach the foreign runtime only
        // while it is up (a process exiting with the call in flight).
        let (ret, body) = if m.shape == Shape::ServerStreaming {
            let object = stream_object_name(s, m);
            (
                quote!(std::sync::Arc<#object>),
                quote! {
                    let replies = fluxon_bindings::glue::exit_safe(self.inner.#with(#arg, options)).await?;
                    Ok(std::sync::Arc::new(#object {
                        inner: fluxon_bindings::glue::StreamReader::new(replies),
                    }))
                },
            )
        } else if is_empty(&m.output) {
            (
                quote!(()),
                quote!(fluxon_bindings::glue::exit_safe(self.inner.#with(#arg, options)).await?; Ok(())),
            )
        } else {
            let t = message_type(&m.output, ctx.package);
            (
                quote!(#t),
                quote!(Ok(fluxon_bindings::glue::exit_safe(self.inner.#with(#arg, options)).await?.into())),
            )
        };
        quote! {
            #mdocs
            #[uniffi::method(default(options = None))]
            pub async fn #method(
                &self,
                #param
                options: Option<fluxon_bindings::CallOptions>,
            ) -> Result<#ret, fluxon_bindings::FluxonError> {
                let options = options.map(Into::into).unwrap_or_default();
                #body
            }
        }
    });
    quote! {
        #docs
        #[derive(Debug, uniffi::Object)]
        pub struct #name {
            inner: super::#name,
        }

        #[uniffi::export(async_runtime = "tokio")]
        impl #name {
            /// A client calling over `client`'s connection.
            #[uniffi::constructor]
            pub fn new(client: std::sync::Arc<fluxon_bindings::FluxonClient>) -> std::sync::Arc<Self> {
                std::sync::Arc::new(Self {
                    inner: super::#name::new(client.connection().clone()),
                })
            }

            #(#methods)*

            #(#calls)*
        }

        #(#streams)*
    }
}

/// The uniffi object a client-streaming or bidirectional method returns: `ServiceMethodCall`.
fn call_object_name(s: &Service, m: &Method) -> proc_macro2::Ident {
    format_ident!("{}{}Call", s.name, m.rust_name.to_upper_camel_case())
}

/// A client-streaming or bidirectional method of the client (opening the call) and the call
/// object it returns.
fn streaming_call(ctx: &Ctx<'_>, s: &Service, m: &Method) -> (TokenStream, TokenStream) {
    let object = call_object_name(s, m);
    let method = ident(&m.rust_name);
    let mdocs = doc(m.doc.clone());
    let routes_mod = format_ident!("{}", crate::rust::routes_module(s));
    let route = crate::rust::route_const(m);
    let (in_prost, send_param, send_arg) = if is_empty(&m.input) {
        (quote!(()), quote!(), quote!(()))
    } else {
        let t = message_type(&m.input, ctx.package);
        (
            message_prost(&m.input, ctx.package),
            quote!(request: #t),
            quote!(request.into()),
        )
    };
    let (out_prost, item, convert) = reply_item(ctx, m);
    let open = quote! {
        #mdocs
        #[uniffi::method(default(options = None))]
        pub async fn #method(
            &self,
            options: Option<fluxon_bindings::CallOptions>,
        ) -> Result<std::sync::Arc<#object>, fluxon_bindings::FluxonError> {
            let options = options.map(Into::into).unwrap_or_default();
            let (requests, replies) = fluxon_bindings::glue::exit_safe(
                self.inner
                    .connection()
                    .open_streaming::<#in_prost, #out_prost>(super::#routes_mod::#route, options),
            )
            .await?;
            Ok(std::sync::Arc::new(#object {
                requests: fluxon_bindings::glue::RequestWriter::new(requests),
                replies: fluxon_bindings::glue::StreamReader::new(replies),
            }))
        }
    };
    let ending = if m.shape == Shape::ClientStreaming {
        quote! {
            /// Ends the requests and returns the call's one reply.
            pub async fn finish(&self) -> Result<#item, fluxon_bindings::FluxonError> {
                self.requests.finish().await;
                let reply = self.replies.next().await?.ok_or_else(|| {
                    fluxon_bindings::FluxonError::from(fluxon_bindings::glue::Status::internal(
                        "the call ended without a reply",
                    ))
                })?;
                Ok((#convert)(reply))
            }
        }
    } else {
        quote! {
            /// Ends the requests; the replies go on until the server ends the call.
            pub async fn finish(&self) {
                self.requests.finish().await;
            }

            /// The next reply, or nothing once the call has ended.
            pub async fn next(&self) -> Result<Option<#item>, fluxon_bindings::FluxonError> {
                Ok(self.replies.next().await?.map(#convert))
            }
        }
    };
    let docs = doc(Some(format!(
        "A call of `{}` in progress: `send()` each request, then `finish()`; `cancel()` abandons it.",
        m.route
    )));
    let object_def = quote! {
        #docs
        #[derive(Debug, uniffi::Object)]
        pub struct #object {
            requests: fluxon_bindings::glue::RequestWriter<#in_prost>,
            replies: fluxon_bindings::glue::StreamReader<#out_prost>,
        }

        #[uniffi::export(async_runtime = "tokio")]
        impl #object {
            /// Sends one request, waiting while the server's flow control holds it back. Fails
            /// once the call has ended (`Cancelled`, or the status of a refused message); the
            /// call's outcome then comes from `finish()` (or `next()`).
            pub async fn send(&self, #send_param) -> Result<(), fluxon_bindings::FluxonError> {
                self.requests.send(#send_arg).await
            }

            #ending

            /// Abandons the call: the server stops it.
            pub fn cancel(&self) {
                self.requests.cancel();
                self.replies.cancel();
            }
        }
    };
    (open, object_def)
}

/// A streamed reply of `m` as three token streams: its prost type, the foreign type a `next()`
/// returns, and the function from one to the other (`Empty` replies become `true`).
fn reply_item(ctx: &Ctx<'_>, m: &Method) -> (TokenStream, TokenStream, TokenStream) {
    if is_empty(&m.output) {
        (quote!(()), quote!(bool), quote!(|()| true))
    } else {
        (
            message_prost(&m.output, ctx.package),
            message_type(&m.output, ctx.package),
            quote!(Into::into),
        )
    }
}

/// The uniffi object a server-streaming method returns: `ServiceMethodStream`.
fn stream_object_name(s: &Service, m: &Method) -> proc_macro2::Ident {
    format_ident!("{}{}Stream", s.name, m.rust_name.to_upper_camel_case())
}

/// The stream object of server-streaming `m`: its replies, one `next()` at a time.
fn server_stream(ctx: &Ctx<'_>, s: &Service, m: &Method) -> TokenStream {
    let object = stream_object_name(s, m);
    let docs = doc(Some(format!(
        "The replies of `{}`: `next()` returns each in turn, then nothing once the call has \
         ended; a failed call raises once. `cancel()` ends the call.",
        m.route
    )));
    let (prost, item, convert) = reply_item(ctx, m);
    quote! {
        #docs
        #[derive(Debug, uniffi::Object)]
        pub struct #object {
            inner: fluxon_bindings::glue::StreamReader<#prost>,
        }

        #[uniffi::export(async_runtime = "tokio")]
        impl #object {
            /// The next reply, or nothing once the call has ended.
            pub async fn next(&self) -> Result<Option<#item>, fluxon_bindings::FluxonError> {
                Ok(self.inner.next().await?.map(#convert))
            }

            /// Ends the call: the server stops sending; `next()` returns nothing from then on.
            pub fn cancel(&self) {
                self.inner.cancel();
            }
        }
    }
}

fn reverse(ctx: &mut Ctx<'_>, s: &Service) -> TokenStream {
    let handler = format_ident!("{}Handler", s.name);
    let error = format_ident!("{}Error", s.name);
    let adapter = format_ident!("{}Adapter", s.name);
    let service_fn = format_ident!("{}_service", s.name.to_snake_case());
    let router_fn = format_ident!("{}_reverse_router", s.name.to_snake_case());
    let docs = doc(s.doc.clone());
    let error_doc = format!(
        " The status a `{}Handler` method raises to refuse a reverse call.",
        s.name
    );
    let mut trait_methods = Vec::new();
    let mut adapter_methods = Vec::new();
    for m in &s.methods {
        let method = ident(&m.rust_name);
        let mdocs = doc(m.doc.clone());
        let in_prost = if is_empty(&m.input) {
            quote!(())
        } else {
            message_prost(&m.input, ctx.package)
        };
        let out_prost = if is_empty(&m.output) {
            quote!(())
        } else {
            message_prost(&m.output, ctx.package)
        };
        let (param, arg, unused) = if is_empty(&m.input) {
            (quote!(), quote!(), quote!(_request))
        } else {
            let t = message_type(&m.input, ctx.package);
            (quote!(request: #t), quote!(request.into()), quote!(request))
        };
        let (ret, ok) = if is_empty(&m.output) {
            (quote!(()), quote!(Ok(())))
        } else {
            let t = message_type(&m.output, ctx.package);
            (quote!(#t), quote!(Ok(reply.into())))
        };
        trait_methods.push(quote! {
            #mdocs
            async fn #method(&self, #param) -> Result<#ret, #error>;
        });
        let reply_pat = if is_empty(&m.output) {
            quote!(Ok(()))
        } else {
            quote!(Ok(reply))
        };
        adapter_methods.push(quote! {
            async fn #method(
                &self,
                #unused: #in_prost,
            ) -> Result<#out_prost, fluxon_client::Status> {
                // Called on a runtime thread: only while the foreign runtime is up.
                match fluxon_bindings::glue::foreign_call(|| self.0.#method(#arg)).await {
                    Some(#reply_pat) => #ok,
                    Some(Err(error)) => Err(error.into()),
                    None => Err(fluxon_client::Status::unavailable(
                        "the client application is exiting",
                    )),
                }
            }
        });
    }
    let fn_doc = format!(
        " The reverse-call handlers of `{}`, answered by `handler`: pass them to\n `FluxonClient.connect`.",
        s.full_name
    );
    let fn_doc = doc(Some(fn_doc.trim_start().to_owned()));
    quote! {
        fluxon_bindings::reverse_error!(
            #[doc = #error_doc]
            #error
        );

        #docs
        #[uniffi::export(foreign)]
        #[async_trait::async_trait]
        pub trait #handler: Send + Sync {
            #(#trait_methods)*
        }

        /// The foreign handler, released only while the foreign runtime is up.
        struct #adapter(fluxon_bindings::glue::Foreign<dyn #handler>);

        impl super::#handler for #adapter {
            #(#adapter_methods)*
        }

        #fn_doc
        #[uniffi::export]
        pub fn #service_fn(handler: std::sync::Arc<dyn #handler>) -> std::sync::Arc<fluxon_bindings::ReverseService> {
            fluxon_bindings::ReverseService::from_router(super::#router_fn(std::sync::Arc::new(#adapter(fluxon_bindings::glue::Foreign::new(handler)))))
        }
    }
}

/// The `ffi` module of `package`, or the reasons it cannot be generated.
pub(crate) fn package(
    loaded: &Loaded,
    package: &str,
    services: &[Service],
) -> Result<TokenStream, Vec<Diagnostic>> {
    let mut ctx = Ctx {
        loaded,
        package,
        diags: Vec::new(),
        messages: BTreeMap::new(),
        enums: BTreeMap::new(),
    };
    let services: Vec<&Service> = services.iter().filter(|s| s.package == package).collect();
    for s in &services {
        for m in &s.methods {
            for msg in [&m.input, &m.output] {
                if storage_type(msg.full_name()).is_some() {
                    continue;
                }
                if msg.package_name() != package && !is_empty(msg) {
                    ctx.diags.push(
                        Diagnostic::new(
                            None,
                            format!(
                                "rpc `{}` uses `{}` from another package",
                                m.route,
                                msg.full_name()
                            ),
                        )
                        .hint("the uniffi glue maps messages of the service's own package only"),
                    );
                } else {
                    ctx.reach(msg);
                }
            }
        }
    }
    let messages: Vec<MessageDescriptor> = ctx.messages.values().cloned().collect();
    let mut items = Vec::new();
    for m in &messages {
        items.push(record(&mut ctx, m));
    }
    let enums: Vec<EnumDescriptor> = ctx.enums.values().cloned().collect();
    let mut enum_items: Vec<TokenStream> = enums.iter().map(|e| enumeration(&ctx, e)).collect();
    enum_items.append(&mut items);
    let mut items = enum_items;
    for s in &services {
        if s.reverse {
            items.push(reverse(&mut ctx, s));
        } else {
            items.push(client(&mut ctx, s));
        }
    }
    let mut names: Vec<String> = messages
        .iter()
        .map(|m| ffi_name(m.full_name(), package))
        .chain(enums.iter().map(|e| ffi_name(e.full_name(), package)))
        .collect();
    for s in &services {
        if s.reverse {
            names.push(format!("{}Handler", s.name));
            names.push(format!("{}Error", s.name));
        } else {
            names.push(format!("{}Client", s.name));
            for m in &s.methods {
                match m.shape {
                    Shape::Unary => {}
                    Shape::ServerStreaming => names.push(stream_object_name(s, m).to_string()),
                    Shape::ClientStreaming | Shape::Bidirectional => {
                        names.push(call_object_name(s, m).to_string());
                    }
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        if GENERIC_NAMES.contains(&n.as_str()) {
            ctx.diags.push(
                Diagnostic::new(None, format!("`{n}` in package `{package}` has the name of a type of Fluxon's generic bindings"))
                    .hint(format!("rename it; reserved: {}", GENERIC_NAMES.join(", "))),
            );
        }
        if !seen.insert(n.clone()) {
            ctx.diags.push(
                Diagnostic::new(
                    None,
                    format!("two uniffi types of package `{package}` are named `{n}`"),
                )
                .hint("nested messages are named `OuterInner`; rename one of them"),
            );
        }
    }
    if !ctx.diags.is_empty() {
        return Err(ctx.diags);
    }
    let module_doc = format!(" The uniffi glue of package `{package}`: records, service clients and reverse-call traits.");
    Ok(quote! {
        #[doc = #module_doc]
        #[allow(clippy::all, clippy::pedantic)]
        pub mod ffi {
            #(#items)*
        }
    })
}
