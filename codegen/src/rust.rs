//! Emitting Rust: service traits and registration, client stubs, reverse-call glue, model code
//! and the embedded descriptor set. Everything here appends to the module prost-build writes
//! for a package, so message types are referred to by their prost paths.

use heck::{ToShoutySnakeCase as _, ToSnakeCase as _, ToUpperCamelCase as _};
use proc_macro2::{Ident, Literal, Span, TokenStream};
use prost_reflect::MessageDescriptor;
use quote::{format_ident, quote};

use fluxon_schema::{ColumnMeta, FieldType, ModelMeta, OnDelete, Value};

use crate::model::{Model, RustTy};
use crate::service::{Method, Service, Shape};

/// Rust keywords that need `r#` (or cannot be raw and get a trailing `_`).
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where",
    "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

/// An identifier, escaped the way prost escapes field and module names.
pub(crate) fn ident(name: &str) -> Ident {
    if matches!(name, "self" | "super" | "crate" | "Self") {
        format_ident!("{}_", name)
    } else if KEYWORDS.contains(&name) {
        Ident::new_raw(name, Span::call_site())
    } else {
        Ident::new(name, Span::call_site())
    }
}

/// `#[doc]` attributes, one per line.
fn doc(text: &str) -> TokenStream {
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

/// The proto comments when present, else `fallback`.
fn doc_or(comments: Option<&str>, fallback: &str) -> TokenStream {
    doc(comments.unwrap_or(fallback))
}

/// Where server-side generated code names Fluxon's own storage messages (`fluxon.storage`).
pub(crate) const SERVER_STORAGE: &str = "::fluxon_server::proto::storage";
/// Where client-side generated code names them.
pub(crate) const CLIENT_STORAGE: &str = "::fluxon_client::proto::storage";
/// Where code that is neither names them (messages only).
pub(crate) const PROTO_STORAGE: &str = "::fluxon_proto::storage";

/// Where the messages of a package generated with `server` and `client` parts name Fluxon's
/// storage messages: through the runtime crate the package already depends on, so that a
/// client crate needs `fluxon-client` and not `fluxon-proto` too. Every path names the same
/// types (`fluxon_proto`'s, re-exported as `proto`).
pub(crate) fn storage_root(server: bool, client: bool) -> &'static str {
    match (server, client) {
        (true, _) => SERVER_STORAGE,
        (false, true) => CLIENT_STORAGE,
        (false, false) => PROTO_STORAGE,
    }
}

/// The Rust path of message `msg` as seen from the module of package `from`, naming Fluxon's
/// storage messages under `storage` (one of the `*_STORAGE` roots).
pub(crate) fn type_path(from: &str, msg: &MessageDescriptor, storage: &str) -> TokenStream {
    let full = msg.full_name();
    if let Some(name) = full.strip_prefix("google.protobuf.") {
        if name == "Empty" {
            return quote!(());
        }
        let segments = name.split('.').map(|s| ident(&s.to_upper_camel_case()));
        return quote!(::prost_types::#(#segments)::*);
    }
    if let Some(name) = full.strip_prefix("fluxon.storage.") {
        // Mapped to the runtime's own types (the `extern_path` of `fluxon.storage`).
        let root = storage
            .split("::")
            .filter(|s| !s.is_empty())
            .map(|s| format_ident!("{s}"));
        let segments = name.split('.').map(|s| ident(&s.to_upper_camel_case()));
        return quote!(#(::#root)*::#(#segments)::*);
    }
    let package = msg.package_name();
    let split = |p: &str| -> Vec<String> {
        if p.is_empty() {
            Vec::new()
        } else {
            p.split('.').map(str::to_owned).collect()
        }
    };
    let (from_parts, to_parts) = (split(from), split(package));
    let common = from_parts
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut path: Vec<TokenStream> = Vec::new();
    for _ in common..from_parts.len() {
        path.push(quote!(super));
    }
    for part in &to_parts[common..] {
        let m = ident(&part.to_snake_case());
        path.push(quote!(#m));
    }
    let local = if package.is_empty() {
        full
    } else {
        &full[package.len() + 1..]
    };
    let segments: Vec<&str> = local.split('.').collect();
    if let Some((last, outer)) = segments.split_last() {
        for o in outer {
            let m = ident(&o.to_snake_case());
            path.push(quote!(#m));
        }
        let t = ident(&last.to_upper_camel_case());
        path.push(quote!(#t));
    }
    quote!(#(#path)::*)
}

struct MethodParts {
    name: Ident,
    with: Ident,
    route: Ident,
    input: TokenStream,
    output: TokenStream,
    doc: TokenStream,
}

fn method_parts(package: &str, m: &Method, storage: &str) -> MethodParts {
    MethodParts {
        name: ident(&m.rust_name),
        with: format_ident!("{}_with", m.rust_name),
        route: route_const(m),
        input: type_path(package, &m.input, storage),
        output: type_path(package, &m.output, storage),
        doc: doc_or(m.doc.as_deref(), &format!("`{}`.", m.route)),
    }
}

/// Generated type names of a service, for clash checks.
pub(crate) fn service_type_names(s: &Service, server: bool, client: bool) -> Vec<String> {
    let mut names = Vec::new();
    if s.reverse {
        if server {
            names.push(format!("{}Caller", s.name));
        }
        if client {
            names.push(format!("{}Handler", s.name));
        }
    } else {
        if server {
            names.push(s.name.clone());
            names.push(format!("{}Server", s.name));
        }
        if client {
            names.push(format!("{}Client", s.name));
        }
    }
    names
}

/// The constant naming a method's route in the routes module: `SIGNUP`.
pub(crate) fn route_const(m: &Method) -> Ident {
    format_ident!("{}", m.rust_name.to_shouty_snake_case())
}

/// The module holding route names of a service: `university_routes`.
pub(crate) fn routes_module(s: &Service) -> String {
    format!("{}_routes", s.name.to_snake_case())
}

/// Route-name constants, then the server and client sides asked for.
pub(crate) fn service(s: &Service, server: bool, client: bool) -> TokenStream {
    let routes_mod = format_ident!("{}", routes_module(s));
    let consts = s.methods.iter().map(|m| {
        let name = route_const(m);
        let route = &m.route;
        let d = doc(&format!("`{route}`."));
        quote! { #d pub const #name: &str = #route; }
    });
    let routes_doc = doc(&format!("Route names of `{}`.", s.full_name));
    let mut out = quote! {
        #routes_doc
        pub mod #routes_mod {
            #(#consts)*
        }
    };
    match (s.reverse, server, client) {
        (false, true, _) => out.extend(server_side(s)),
        (true, true, _) => out.extend(reverse_caller(s)),
        _ => {}
    }
    match (s.reverse, client) {
        (false, true) => out.extend(client_stub(s)),
        (true, true) => out.extend(reverse_handler(s)),
        _ => {}
    }
    out
}

fn server_side(s: &Service) -> TokenStream {
    let trait_name = ident(&s.name);
    let server = format_ident!("{}Server", s.name);
    let routes_mod = format_ident!("{}", routes_module(s));
    let parts: Vec<MethodParts> = s
        .methods
        .iter()
        .map(|m| method_parts(&s.package, m, SERVER_STORAGE))
        .collect();
    let trait_doc = doc_or(
        s.doc.as_deref(),
        &format!(
            "Server side of `{}`: implement it with `async fn`s.",
            s.full_name
        ),
    );
    let trait_methods = s.methods.iter().zip(&parts).map(|(m, p)| {
        let MethodParts {
            name,
            input,
            output,
            doc,
            ..
        } = p;
        let request = match m.shape {
            Shape::Unary | Shape::ServerStreaming => quote!(#input),
            Shape::ClientStreaming | Shape::Bidirectional => {
                quote!(fluxon_server::Streaming<#input>)
            }
        };
        let reply = match m.shape {
            Shape::Unary | Shape::ClientStreaming => quote!(#output),
            Shape::ServerStreaming | Shape::Bidirectional => {
                quote!(fluxon_server::Replies<#output>)
            }
        };
        quote! {
            #doc
            fn #name(
                &self,
                request: fluxon_server::Request<#request>,
            ) -> impl std::future::Future<Output = Result<#reply, fluxon_server::Status>> + Send;
        }
    });
    let routes = s.methods.iter().zip(&parts).map(|(m, p)| {
        let MethodParts {
            name, route, input, ..
        } = p;
        let (register, request) = match m.shape {
            Shape::Unary => (quote!(route_with), quote!(#input)),
            Shape::ServerStreaming => (quote!(server_streaming), quote!(#input)),
            Shape::ClientStreaming => (
                quote!(client_streaming),
                quote!(fluxon_server::Streaming<#input>),
            ),
            Shape::Bidirectional => (
                quote!(bidi_streaming),
                quote!(fluxon_server::Streaming<#input>),
            ),
        };
        let mut options = quote!(fluxon_server::RouteOptions::new());
        if m.requires_login {
            options.extend(quote!(.requires_login()));
        }
        if m.idempotent {
            options.extend(quote!(.idempotent()));
        }
        quote! {
            .#register(#routes_mod::#route, #options, {
                let service = std::sync::Arc::clone(&service);
                move |request: fluxon_server::Request<#request>| {
                    let service = std::sync::Arc::clone(&service);
                    async move { service.#name(request).await }
                }
            })
        }
    });
    let into_router = if s.methods.is_empty() {
        quote! {
            /// A router with this service's routes (none).
            pub fn into_router(self) -> fluxon_server::Router {
                fluxon_server::Router::new()
            }
        }
    } else {
        quote! {
            /// A router with one route per method, honoring `requires_login` and
            /// `idempotent`; merge it into the application's router.
            pub fn into_router(self) -> fluxon_server::Router {
                let service = self.service;
                fluxon_server::Router::new()
                    #(#routes)*
            }
        }
    };
    let server_doc = doc(&format!(
        "Registers an implementation of [`{}`] with a router.",
        s.name
    ));
    quote! {
        #trait_doc
        pub trait #trait_name: Send + Sync + 'static {
            #(#trait_methods)*
        }

        #server_doc
        #[derive(Debug)]
        pub struct #server<T> {
            service: std::sync::Arc<T>,
        }

        impl<T: #trait_name> #server<T> {
            /// Serves `service`.
            pub fn new(service: T) -> Self {
                Self::from_arc(std::sync::Arc::new(service))
            }

            /// Serves a shared `service`.
            pub fn from_arc(service: std::sync::Arc<T>) -> Self {
                Self { service }
            }

            #into_router
        }
    }
}

fn client_stub(s: &Service) -> TokenStream {
    let client = format_ident!("{}Client", s.name);
    let routes_mod = format_ident!("{}", routes_module(s));
    let methods = s.methods.iter().map(|m| {
        let MethodParts {
            name,
            with,
            route,
            input,
            output,
            doc,
        } = method_parts(&s.package, m, CLIENT_STORAGE);
        let options = if m.idempotent {
            quote!(options.idempotent())
        } else {
            quote!(options)
        };
        let with_doc = doc_or(
            None,
            &format!(
                "[`Self::{}`] with call options (timeout, metadata).",
                m.rust_name
            ),
        );
        let streaming_with_doc = doc_or(
            None,
            &format!(
                "[`Self::{}`] with call options (a deadline for the whole call, metadata).",
                m.rust_name
            ),
        );
        match m.shape {
            Shape::Unary => {}
            Shape::ServerStreaming => {
                return quote! {
                    #doc
                    pub async fn #name(
                        &self,
                        request: #input,
                    ) -> Result<fluxon_client::Streaming<#output>, fluxon_client::Status> {
                        self.#with(request, fluxon_client::CallOptions::new()).await
                    }

                    #streaming_with_doc
                    pub async fn #with(
                        &self,
                        request: #input,
                        options: fluxon_client::CallOptions,
                    ) -> Result<fluxon_client::Streaming<#output>, fluxon_client::Status> {
                        self.connection
                            .server_streaming(#routes_mod::#route, &request, options)
                            .await
                    }
                };
            }
            Shape::ClientStreaming => {
                return quote! {
                    #doc
                    pub async fn #name(
                        &self,
                        requests: impl fluxon_client::Stream<Item = #input> + Send,
                    ) -> Result<#output, fluxon_client::Status> {
                        self.#with(requests, fluxon_client::CallOptions::new()).await
                    }

                    #streaming_with_doc
                    pub async fn #with(
                        &self,
                        requests: impl fluxon_client::Stream<Item = #input> + Send,
                        options: fluxon_client::CallOptions,
                    ) -> Result<#output, fluxon_client::Status> {
                        self.connection
                            .client_streaming(#routes_mod::#route, requests, options)
                            .await
                    }
                };
            }
            Shape::Bidirectional => {
                return quote! {
                    #doc
                    pub async fn #name(
                        &self,
                    ) -> Result<
                        (fluxon_client::RequestSink<#input>, fluxon_client::Streaming<#output>),
                        fluxon_client::Status,
                    > {
                        self.#with(fluxon_client::CallOptions::new()).await
                    }

                    #streaming_with_doc
                    pub async fn #with(
                        &self,
                        options: fluxon_client::CallOptions,
                    ) -> Result<
                        (fluxon_client::RequestSink<#input>, fluxon_client::Streaming<#output>),
                        fluxon_client::Status,
                    > {
                        self.connection.open_streaming(#routes_mod::#route, options).await
                    }
                };
            }
        }
        quote! {
            #doc
            pub async fn #name(&self, request: #input) -> Result<#output, fluxon_client::Status> {
                self.#with(request, fluxon_client::CallOptions::new()).await
            }

            #with_doc
            pub async fn #with(
                &self,
                request: #input,
                options: fluxon_client::CallOptions,
            ) -> Result<#output, fluxon_client::Status> {
                self.connection
                    .call_with(#routes_mod::#route, &request, #options)
                    .await
            }
        }
    });
    let client_doc = doc(&format!(
        "Client of `{}`: one async method per rpc.",
        s.full_name
    ));
    quote! {
        #client_doc
        #[derive(Debug, Clone)]
        pub struct #client {
            connection: fluxon_client::Connection,
        }

        impl #client {
            /// A client calling over `connection`.
            pub fn new(connection: fluxon_client::Connection) -> Self {
                Self { connection }
            }

            /// The underlying connection.
            pub fn connection(&self) -> &fluxon_client::Connection {
                &self.connection
            }

            #(#methods)*
        }
    }
}

fn reverse_caller(s: &Service) -> TokenStream {
    let caller = format_ident!("{}Caller", s.name);
    let routes_mod = format_ident!("{}", routes_module(s));
    let methods = s.methods.iter().map(|m| {
        let MethodParts {
            name,
            route,
            input,
            output,
            doc,
            ..
        } = method_parts(&s.package, m, SERVER_STORAGE);
        quote! {
            #doc
            pub async fn #name(
                &self,
                request: &#input,
                timeout: std::time::Duration,
            ) -> Result<#output, fluxon_server::Status> {
                self.session.call(#routes_mod::#route, request, timeout).await
            }
        }
    });
    let caller_doc = doc(&format!(
        "Server side of reverse service `{}`: calls a client's handlers over its session.",
        s.full_name
    ));
    quote! {
        #caller_doc
        #[derive(Debug, Clone)]
        pub struct #caller {
            session: fluxon_server::SessionHandle,
        }

        impl #caller {
            /// A caller reaching the client of `session`.
            pub fn new(session: fluxon_server::SessionHandle) -> Self {
                Self { session }
            }

            /// The session called.
            pub fn session(&self) -> &fluxon_server::SessionHandle {
                &self.session
            }

            #(#methods)*
        }
    }
}

fn reverse_handler(s: &Service) -> TokenStream {
    let handler = format_ident!("{}Handler", s.name);
    let router_fn = format_ident!("{}_reverse_router", s.name.to_snake_case());
    let routes_mod = format_ident!("{}", routes_module(s));
    let parts: Vec<MethodParts> = s
        .methods
        .iter()
        .map(|m| method_parts(&s.package, m, CLIENT_STORAGE))
        .collect();
    let trait_methods = parts.iter().map(|p| {
        let MethodParts {
            name,
            input,
            output,
            doc,
            ..
        } = p;
        quote! {
            #doc
            fn #name(
                &self,
                request: #input,
            ) -> impl std::future::Future<Output = Result<#output, fluxon_client::Status>> + Send;
        }
    });
    let routes = parts.iter().map(|p| {
        let MethodParts {
            name, route, input, ..
        } = p;
        quote! {
            .route(#routes_mod::#route, {
                let handler = std::sync::Arc::clone(&handler);
                move |request: #input| {
                    let handler = std::sync::Arc::clone(&handler);
                    async move { handler.#name(request).await }
                }
            })
        }
    });
    let body = if s.methods.is_empty() {
        quote! {
            let _ = handler;
            fluxon_client::ReverseRouter::new()
        }
    } else {
        quote! { fluxon_client::ReverseRouter::new() #(#routes)* }
    };
    let trait_doc = doc_or(
        s.doc.as_deref(),
        &format!(
            "Client side of reverse service `{}`: answers the server's calls.",
            s.full_name
        ),
    );
    let fn_doc = doc(&format!(
        "Handlers for `{}` backed by `handler`; pass them to `ClientConfig::reverse`.",
        s.full_name
    ));
    quote! {
        #trait_doc
        pub trait #handler: Send + Sync + 'static {
            #(#trait_methods)*
        }

        #fn_doc
        pub fn #router_fn<T: #handler>(handler: std::sync::Arc<T>) -> fluxon_client::ReverseRouter {
            #body
        }
    }
}

/// The embedded descriptor set and, with the server side, the reflection route.
pub(crate) fn descriptor(bytes: &[u8], server: bool) -> TokenStream {
    let lit = Literal::byte_string(bytes);
    let mut out = quote! {
        /// Every file of this schema and its imports, as an encoded
        /// `google.protobuf.FileDescriptorSet` (option values kept, source info dropped).
        pub const FILE_DESCRIPTOR_SET: &[u8] = #lit;

        /// The route answering with [`FILE_DESCRIPTOR_SET`] (request `()`, reply bytes).
        pub const REFLECTION_ROUTE: &str = "fluxon.Reflection/FileDescriptorSet";
    };
    if server {
        out.extend(quote! {
            /// A router serving [`FILE_DESCRIPTOR_SET`] on [`REFLECTION_ROUTE`], so generic
            /// clients can discover the schema. Merge it once per server.
            pub fn reflection_router() -> fluxon_server::Router {
                fluxon_server::Router::new().route(
                    REFLECTION_ROUTE,
                    |_: fluxon_server::Request<()>| async {
                        Ok::<_, fluxon_server::Status>(FILE_DESCRIPTOR_SET.to_vec())
                    },
                )
            }
        });
    }
    out
}

fn rust_ty(ty: RustTy) -> TokenStream {
    match ty {
        RustTy::I32 => quote!(i32),
        RustTy::I64 => quote!(i64),
        RustTy::U32 => quote!(u32),
        RustTy::F32 => quote!(f32),
        RustTy::F64 => quote!(f64),
        RustTy::Bool => quote!(bool),
        RustTy::String => quote!(String),
        RustTy::Bytes => quote!(Vec<u8>),
        RustTy::Timestamp => quote!(fluxon_db::Timestamp),
        RustTy::Date => quote!(fluxon_db::Date),
        RustTy::Password => quote!(fluxon_db::Password),
    }
}

fn field_type_tokens(ty: FieldType) -> TokenStream {
    match ty {
        FieldType::Integer => quote!(FieldType::Integer),
        FieldType::Real => quote!(FieldType::Real),
        FieldType::Text => quote!(FieldType::Text),
        FieldType::Blob => quote!(FieldType::Blob),
        FieldType::Bool => quote!(FieldType::Bool),
        FieldType::Timestamp => quote!(FieldType::Timestamp),
        FieldType::Date => quote!(FieldType::Date),
    }
}

fn on_delete_tokens(o: OnDelete) -> TokenStream {
    match o {
        OnDelete::Cascade => quote!(OnDelete::Cascade),
        OnDelete::SetNull => quote!(OnDelete::SetNull),
        OnDelete::Restrict => quote!(OnDelete::Restrict),
        OnDelete::SetDefault => quote!(OnDelete::SetDefault),
        OnDelete::NoAction => quote!(OnDelete::NoAction),
    }
}

fn value_tokens(v: &Value) -> TokenStream {
    match v {
        Value::Null => quote!(fluxon_db::Value::Null),
        Value::Integer(i) => {
            let l = Literal::i64_unsuffixed(*i);
            quote!(fluxon_db::Value::Integer(#l))
        }
        Value::Real(r) => {
            let l = Literal::f64_unsuffixed(*r);
            quote!(fluxon_db::Value::Real(#l))
        }
        Value::Text(s) => quote!(fluxon_db::Value::Text(#s.to_owned())),
        Value::Blob(b) => {
            let bytes = b.iter().map(|x| Literal::u8_unsuffixed(*x));
            quote!(fluxon_db::Value::Blob(vec![#(#bytes),*]))
        }
    }
}

fn column_meta(c: &ColumnMeta) -> TokenStream {
    let (name, ty) = (&c.name, field_type_tokens(c.ty));
    let number = Literal::u32_unsuffixed(c.field_number);
    let mut t = quote!(ColumnMeta::new(#name, #number, #ty));
    if c.primary_key {
        t.extend(quote!(.primary_key()));
    }
    if c.nullable {
        t.extend(quote!(.nullable()));
    }
    if c.unique {
        t.extend(quote!(.unique()));
    }
    if let Some(n) = c.max_length {
        let n = Literal::u32_unsuffixed(n);
        t.extend(quote!(.max_length(#n)));
    }
    if let Some(v) = &c.default {
        let v = value_tokens(v);
        t.extend(quote!(.default_value(#v)));
    }
    if c.index {
        t.extend(quote!(.index()));
    }
    if c.auto_now_add {
        t.extend(quote!(.auto_now_add()));
    }
    if c.auto_now {
        t.extend(quote!(.auto_now()));
    }
    if c.password {
        t.extend(quote!(.password()));
    }
    if let Some(fk) = &c.foreign_key {
        let (target, on_delete) = (&fk.model, on_delete_tokens(fk.on_delete));
        if fk.one_to_one {
            t.extend(quote!(.one_to_one(#target, #on_delete)));
        } else {
            t.extend(quote!(.foreign_key(#target, #on_delete)));
        }
    }
    t
}

fn model_meta(m: &ModelMeta) -> TokenStream {
    let (name, table) = (&m.name, &m.table);
    let mut t = quote!(ModelMeta::new(#name, #table));
    if m.authorized_user {
        t.extend(quote!(.authorized_user()));
    }
    for c in m.columns.iter().filter(|c| c.field_number != 0) {
        let c = column_meta(c);
        t.extend(quote!(.column(#c)));
    }
    for r in &m.many_to_many {
        let (name, target) = (&r.name, &r.target);
        let number = Literal::u32_unsuffixed(r.field_number);
        let through = match &r.through {
            Some(th) => quote!(Some(#th)),
            None => quote!(None),
        };
        t.extend(quote!(.many_to_many(#name, #number, #target, #through)));
    }
    for idx in &m.indexes {
        let (cols, unique) = (&idx.columns, idx.unique);
        t.extend(quote!(.index(&[#(#cols),*], #unique)));
    }
    t.extend(quote!(.normalized()));
    t
}

/// Names the `models` module imports; models cannot be named like them.
pub(crate) const MODEL_IMPORTS: &[&str] = &[
    "LazyLock",
    "ColumnMeta",
    "FieldType",
    "ModelMeta",
    "OnDelete",
    "Arg",
    "Column",
    "Model",
    "Relation",
    "RowReader",
];

/// The `use` lines of the `models` module: only what the models need.
fn model_imports(models: &[&Model]) -> TokenStream {
    let columns = models
        .iter()
        .any(|m| m.meta.columns.iter().any(|c| c.field_number != 0));
    let fks = models
        .iter()
        .any(|m| m.meta.columns.iter().any(|c| c.foreign_key.is_some()));
    let relations = models.iter().any(|m| !m.relations.is_empty());
    let mut schema = Vec::new();
    if columns {
        schema.push(quote!(ColumnMeta));
        schema.push(quote!(FieldType));
    }
    schema.push(quote!(ModelMeta));
    if fks {
        schema.push(quote!(OnDelete));
    }
    let mut db = vec![quote!(Arg), quote!(Column), quote!(Model)];
    if relations {
        db.push(quote!(Relation));
    }
    db.push(quote!(RowReader));
    db.push(quote!(SqlValue as _));
    quote! {
        use std::sync::LazyLock;

        use fluxon_db::schema::{#(#schema),*};
        use fluxon_db::{#(#db),*};
    }
}

/// The `models` module of a package.
pub(crate) fn models(models: &[&Model]) -> TokenStream {
    let items = models.iter().map(|m| model(m));
    let imports = model_imports(models);
    let all = models.iter().map(|m| {
        let t = ident(&m.meta.name.to_upper_camel_case());
        quote!(<#t as Model>::meta().clone())
    });
    quote! {
        /// This package's database models: row types with typed columns and metadata for
        /// fluxon-db.
        pub mod models {
            #imports

            #(#items)*

            /// Every model of this package, in declaration order (normalized metadata).
            pub fn all() -> Vec<ModelMeta> {
                Vec::from([#(#all),*])
            }
        }
    }
}

fn model(m: &Model) -> TokenStream {
    let name = ident(&m.meta.name.to_upper_camel_case());
    let meta_static = format_ident!("{}_META", m.meta.name.to_shouty_snake_case());
    let struct_doc = doc_or(
        m.doc.as_deref(),
        &format!("Model `{}` (table `{}`).", m.meta.name, m.meta.table),
    );
    let fields = m.columns.iter().map(|c| {
        let f = ident(&c.name);
        let mut ty = rust_ty(c.ty);
        if c.nullable {
            ty = quote!(Option<#ty>);
        }
        let d = if c.name == fluxon_schema::IMPLICIT_ID && c.doc.is_none() {
            doc("Implicit primary key.")
        } else {
            doc_or(c.doc.as_deref(), &format!("Column `{}`.", c.name))
        };
        (quote! { #d pub #f: #ty, }, ty)
    });
    let (field_defs, types): (Vec<TokenStream>, Vec<TokenStream>) = fields.unzip();
    let consts = m
        .columns
        .iter()
        .zip(&types)
        .enumerate()
        .map(|(i, (c, ty))| {
            let k = format_ident!("{}", c.name.to_shouty_snake_case());
            let col = &c.name;
            let i = Literal::usize_unsuffixed(i);
            let d = doc(&format!("Column `{col}`."));
            quote! { #d pub const #k: Column<Self, #ty> = Column::new(#i, #col); }
        });
    let relations = m.relations.iter().map(|r| {
        let k = format_ident!("{}", r.name.to_shouty_snake_case());
        let target = ident(&r.target.to_upper_camel_case());
        let rel = &r.name;
        match &r.through {
            Some(th) => {
                let th_ident = ident(&th.to_upper_camel_case());
                let d = doc_or(
                    r.doc.as_deref(),
                    &format!(
                        "Many-to-many `{rel}` to [`{}`], through [`{}`].",
                        r.target, th
                    ),
                );
                quote! {
                    #d pub const #k: Relation<Self, #target> =
                        Relation::through(#rel, <#th_ident as Model>::meta);
                }
            }
            None => {
                let d = doc_or(
                    r.doc.as_deref(),
                    &format!("Many-to-many `{rel}` to [`{}`].", r.target),
                );
                quote! {
                    #d pub const #k: Relation<Self, #target> = Relation::new(#rel);
                }
            }
        }
    });
    let reads = m.columns.iter().enumerate().map(|(i, c)| {
        let f = ident(&c.name);
        let i = Literal::usize_unsuffixed(i);
        quote!(#f: row.get(#i)?,)
    });
    let writes = m.columns.iter().map(|c| {
        let f = ident(&c.name);
        quote!(self.#f.to_arg())
    });
    let meta = model_meta(&m.meta);
    quote! {
        #struct_doc
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct #name {
            #(#field_defs)*
        }

        impl #name {
            #(#consts)*
            #(#relations)*
        }

        static #meta_static: LazyLock<ModelMeta> = LazyLock::new(|| #meta);

        impl Model for #name {
            fn meta() -> &'static ModelMeta {
                &#meta_static
            }

            fn from_row(row: &RowReader<'_, '_>) -> fluxon_db::Result<Self> {
                Ok(Self { #(#reads)* })
            }

            fn values(&self) -> Vec<Arg<'_>> {
                Vec::from([#(#writes),*])
            }
        }
    }
}
