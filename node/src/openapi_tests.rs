//! Keeps `docs/openapi.yaml` in step with the router: every route of `api::router` (path and
//! method) is documented, nothing documented is missing from the router, and every error
//! code the handlers answer is in the `Error` schema.
//!
//! Both sides are read by plain string scanning (no YAML crate): the router's
//! `.route("PATH", get(..).post(..))` calls in api.rs, and the YAML's `paths:` section, whose
//! path keys are lines `  /...:` and whose methods are lines `    get:` (etc.).

use std::collections::BTreeSet;

const SPEC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml"));
const API_RS: &str = include_str!("api.rs");
const READ_API_RS: &str = include_str!("read_api.rs");

const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Byte offset just past the `)` closing the `(` that ends at `open` (exclusive), skipping
/// string literals.
fn closing_paren(src: &str, open: usize) -> usize {
    let mut depth = 1usize;
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in src[open..].char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses after byte {open} of api.rs");
}

/// `(path, method)` for every `.route(...)` in `fn router` of api.rs.
fn router_routes() -> BTreeSet<(String, String)> {
    let start = API_RS
        .find("pub fn router(")
        .expect("api.rs has `pub fn router(`");
    let body = &API_RS[start..];
    let body = &body[..body.find("\n}\n").expect("fn router ends")];
    let mut out = BTreeSet::new();
    let mut rest = body;
    while let Some(at) = rest.find(".route(") {
        let args_start = at + ".route(".len();
        let args_end = closing_paren(rest, args_start);
        let args = &rest[args_start..args_end - 1];
        let q1 = args.find('"').expect("a route's path is a string literal");
        let q2 = q1 + 1 + args[q1 + 1..].find('"').expect("closing quote");
        let path = &args[q1 + 1..q2];
        let handlers = &args[q2 + 1..];
        let mut methods = 0;
        for m in METHODS {
            let call = format!("{m}(");
            let mut from = 0;
            while let Some(i) = handlers[from..].find(&call) {
                let i = from + i;
                if !handlers[..i].chars().next_back().is_some_and(is_ident) {
                    out.insert((path.to_string(), m.to_string()));
                    methods += 1;
                }
                from = i + call.len();
            }
        }
        assert!(methods > 0, "route {path:?} has no method in api.rs");
        rest = &rest[args_end..];
    }
    out
}

/// `(path, method)` for every operation under `paths:` in the YAML.
fn documented_routes() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in SPEC.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.starts_with('#') {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  /") {
            let key = key
                .trim_end()
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("path key line {line:?} ends with ':'"));
            path = Some(format!("/{}", key.trim_matches(|c| c == '\'' || c == '"')));
            continue;
        }
        if let Some(key) = line.strip_prefix("    ") {
            if key.starts_with(' ') {
                continue;
            }
            let key = key.trim_end();
            if let Some(m) = METHODS.iter().find(|m| key == format!("{m}:")) {
                let p = path
                    .clone()
                    .unwrap_or_else(|| panic!("method {m} outside a path"));
                out.insert((p, (*m).to_string()));
            }
        }
    }
    out
}

/// Error codes the handlers answer: the string after `StatusCode::X,` in an `error(` call,
/// and the codes of `read_through_leader`'s `unavailable("...")`.
fn answered_error_codes() -> BTreeSet<String> {
    let is_code = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let mut out = BTreeSet::new();
    for src in [API_RS, READ_API_RS] {
        for (marker, needs_status) in [("StatusCode::", true), ("unavailable(", false)] {
            let mut from = 0;
            while let Some(i) = src[from..].find(marker) {
                let mut s = &src[from + i + marker.len()..];
                from += i + marker.len();
                if needs_status {
                    let name_end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
                    s = s[name_end..].trim_start();
                    let Some(after_comma) = s.strip_prefix(',') else {
                        continue;
                    };
                    s = after_comma.trim_start();
                }
                let Some(lit) = s.strip_prefix('"') else {
                    continue;
                };
                let Some(end) = lit.find('"') else { continue };
                if is_code(&lit[..end]) {
                    out.insert(lit[..end].to_string());
                }
            }
        }
    }
    out
}

/// The `enum` values listed under `components.schemas.Error`.
fn documented_error_codes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_error = false;
    for line in SPEC.lines() {
        if line.starts_with("    ") && !line.starts_with("     ") {
            in_error = line.trim_end() == "    Error:";
            continue;
        }
        if in_error {
            if let Some(v) = line.trim().strip_prefix("- ") {
                if v.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    out.insert(v.to_string());
                }
            }
        }
    }
    out
}

#[test]
fn openapi_documents_every_route_of_the_router() {
    let routes = router_routes();
    assert!(
        routes.len() >= 30,
        "the scan of api.rs found only {} routes: {routes:?}",
        routes.len()
    );
    for expected in [
        ("/api/v1/checks", "get"),
        ("/api/v1/checks", "put"),
        ("/api/v1/checks", "post"),
        ("/api/v1/silences", "post"),
        ("/api/v1/cluster/members/{id}", "delete"),
        ("/healthz", "get"),
    ] {
        assert!(
            routes.contains(&(expected.0.to_string(), expected.1.to_string())),
            "the scan of api.rs missed {expected:?}"
        );
    }
    let documented = documented_routes();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes of api::router missing from docs/openapi.yaml: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unrouted.is_empty(),
        "docs/openapi.yaml documents operations api::router does not have: {unrouted:?}"
    );
}

#[test]
fn openapi_error_schema_lists_every_error_code() {
    let answered = answered_error_codes();
    for code in ["not_found", "unauthorized", "no_leader", "read_timeout"] {
        assert!(
            answered.contains(code),
            "the scan missed {code:?}: {answered:?}"
        );
    }
    let documented = documented_error_codes();
    let missing: Vec<_> = answered.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "error codes answered by the API but missing from the Error schema: {missing:?}"
    );
}
