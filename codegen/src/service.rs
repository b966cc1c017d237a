//! Services: reading services, methods and their options.

use std::collections::HashSet;

use heck::ToSnakeCase as _;
use prost_reflect::{MessageDescriptor, ServiceDescriptor};

use crate::error::{Diagnostic, Location};
use crate::load::Loaded;
use crate::options::Extensions;

/// One rpc.
#[derive(Debug, Clone)]
pub(crate) struct Method {
    /// The Rust method name, e.g. `signup`.
    pub(crate) rust_name: String,
    /// `package.Service/Method`.
    pub(crate) route: String,
    pub(crate) input: MessageDescriptor,
    pub(crate) output: MessageDescriptor,
    pub(crate) requires_login: bool,
    pub(crate) idempotent: bool,
    pub(crate) doc: Option<String>,
    /// How requests and replies travel (`stream` in the rpc's signature).
    pub(crate) shape: Shape,
}

/// One request or a stream of them, one reply or a stream of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidirectional,
}

impl Shape {
    pub(crate) fn is_streaming(self) -> bool {
        self != Self::Unary
    }
}

/// One service.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) package: String,
    /// The proto name, e.g. `University`.
    pub(crate) name: String,
    pub(crate) full_name: String,
    pub(crate) reverse: bool,
    pub(crate) methods: Vec<Method>,
    pub(crate) doc: Option<String>,
}

fn loc(loaded: &Loaded, file: &str, path: &[i32]) -> Option<Location> {
    Some(loaded.locate(file, &[path]))
}

/// Method names the generated client and caller use for themselves.
const TAKEN: &[&str] = &["new", "connection", "session", "into_router", "from_arc"];

/// Reads the services of the files being generated.
pub(crate) fn read_services(
    loaded: &Loaded,
    ext: &Extensions,
    generated: &HashSet<String>,
) -> Result<Vec<Service>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut out = Vec::new();
    for svc in loaded
        .pool
        .services()
        .filter(|s| generated.contains(s.parent_file().name()))
    {
        match read_service(loaded, ext, &svc) {
            Ok(s) => out.push(s),
            Err(mut d) => diags.append(&mut d),
        }
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

fn read_service(
    loaded: &Loaded,
    ext: &Extensions,
    svc: &ServiceDescriptor,
) -> Result<Service, Vec<Diagnostic>> {
    let file = svc.parent_file();
    let file = file.name();
    let reverse = ext.service(svc).reverse;
    let mut diags = Vec::new();
    let mut methods = Vec::new();
    let mut rust_names = HashSet::new();
    for m in svc.methods() {
        let here = loc(loaded, file, m.path());
        let shape = match (m.is_client_streaming(), m.is_server_streaming()) {
            (false, false) => Shape::Unary,
            (false, true) => Shape::ServerStreaming,
            (true, false) => Shape::ClientStreaming,
            (true, true) => Shape::Bidirectional,
        };
        if reverse && shape.is_streaming() {
            diags.push(
                Diagnostic::new(
                    here,
                    format!(
                        "method `{}` of reverse service `{}` streams",
                        m.name(),
                        svc.name()
                    ),
                )
                .hint("reverse calls are unary: drop `stream`, or make several reverse calls"),
            );
            continue;
        }
        let opts = ext.method(&m);
        if reverse && opts.requires_login {
            diags.push(
                Diagnostic::new(
                    here,
                    format!("requires_login on `{}` of reverse service `{}`", m.name(), svc.name()),
                )
                .hint("reverse calls go from the server to a client: only the server's own routes can require login"),
            );
            continue;
        }
        let rust_name = m.name().to_snake_case();
        let with = format!("{rust_name}_with");
        if TAKEN.contains(&rust_name.as_str())
            || !rust_names.insert(rust_name.clone())
            || !rust_names.insert(with)
        {
            diags.push(
                Diagnostic::new(
                    here,
                    format!(
                        "method `{}` of `{}` becomes `{rust_name}`, which clashes with another generated method",
                        m.name(),
                        svc.name()
                    ),
                )
                .hint(format!(
                    "rename the rpc; reserved names: {} and `<method>_with`",
                    TAKEN.join(", ")
                )),
            );
            continue;
        }
        methods.push(Method {
            rust_name,
            route: format!("{}/{}", svc.full_name(), m.name()),
            input: m.input(),
            output: m.output(),
            requires_login: opts.requires_login,
            idempotent: opts.idempotent,
            doc: loaded.comments(file, m.path()),
            shape,
        });
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Service {
        package: svc.package_name().to_owned(),
        name: svc.name().to_owned(),
        full_name: svc.full_name().to_owned(),
        reverse,
        methods,
        doc: loaded.comments(file, svc.path()),
    })
}
