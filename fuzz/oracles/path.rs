//! Oracle for storage path normalization (`fluxon_server::grant::normalize_path`). Shared by the
//! `path` fuzz target and `server/runtime/tests/fuzz_grants.rs`.

use std::path::{Component, Path};

use fluxon_server::grant::{normalize_path, MAX_NAME_LEN, MAX_PATH_LEN, RESERVED_PREFIX};

/// An accepted path is idempotent under normalization, bounded, free of anything that could
/// leave the root, and joined to a root it stays below it.
pub(crate) fn check(input: &str) {
    let Ok(path) = normalize_path(input) else {
        return;
    };
    let text = path.as_str();
    assert_eq!(normalize_path(text).as_ref(), Ok(&path), "not idempotent");
    assert!(text.len() <= input.len() && text.len() <= MAX_PATH_LEN);
    assert!(!text.starts_with('/'));
    assert!(!text
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == ':'));
    for name in path.components() {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(name.len() <= MAX_NAME_LEN);
        assert!(!name.starts_with(RESERVED_PREFIX));
    }
    let root = Path::new("/srv/root");
    let joined = root.join(text);
    assert!(joined.starts_with(root));
    assert!(joined
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
    // parent + file name rebuild the path.
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if parent.is_root() => assert_eq!(name, text),
        (Some(parent), Some(name)) => assert_eq!(format!("{}/{name}", parent.as_str()), text),
        (None, None) => assert!(path.is_root()),
        other => panic!("inconsistent parent/file name: {other:?}"),
    }
}
