//! Canonical request paths: the first phase of every request. Upstream front ends (Kestrel,
//! nginx) decode `%2e`, turn `\` and `%2f` into `/`, merge slashes and resolve `.`/`..`; if the
//! edge authorised one path and forwarded the client's string, the upstream would serve another.
//! So a path that could be read two ways is refused here, and the rest of the pipeline sees only
//! decoded, validated segments; upstream paths are built from them (`encode_segment`), never from
//! the client's string.

use std::borrow::Cow;
use std::fmt;

/// A path that passed every rule below: decoded segments, none empty, none a dot segment. A
/// segment with nothing to decode is borrowed from the request's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    segments: Vec<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(std::borrow::Cow<'static, str>);

impl PathError {
    const fn rule(why: &'static str) -> Self {
        Self(std::borrow::Cow::Borrowed(why))
    }

    /// A segment that must be an id (or a name) is not.
    pub fn not_an_id(what: &str) -> Self {
        Self(format!("{what} must be made of letters, digits, '_' and '-'").into())
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invalid request path: {}", self.0)
    }
}

impl<'a> CanonicalPath<'a> {
    /// Parses the path of a request URI (no query). One trailing slash is tolerated and dropped,
    /// as Azure's routing does; everything else that a front end could rewrite is refused.
    pub fn parse(raw: &'a str) -> Result<Self, PathError> {
        let rest = raw
            .strip_prefix('/')
            .ok_or(PathError::rule("it must start with '/'"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
            });
        }
        let segments = rest
            .split('/')
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { segments })
    }

    pub fn segments(&self) -> &[Cow<'a, str>] {
        &self.segments
    }
}

fn decode_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw.is_empty() {
        return Err(PathError::rule("empty segments ('//') are not allowed"));
    }
    let bytes = raw.as_bytes();
    if !bytes.contains(&b'%') {
        // Nothing to decode: the same rules, on the segment as it is.
        for &byte in bytes {
            check_byte(byte)?;
        }
        return not_dots(bytes).map(|()| Cow::Borrowed(raw));
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(PathError::rule("'%' must be followed by two hex digits"))?;
                i += 3;
                match hex {
                    b'/' | b'\\' => {
                        return Err(PathError::rule("encoded '/' or '\\' is not allowed"));
                    }
                    // A second decoding by a front end would see what this one did not.
                    b'%' => return Err(PathError::rule("double percent-encoding is not allowed")),
                    other => other,
                }
            }
            other => {
                i += 1;
                other
            }
        };
        check_byte(byte)?;
        decoded.push(byte);
    }
    not_dots(&decoded)?;
    String::from_utf8(decoded)
        .map(Cow::Owned)
        .map_err(|_| PathError::rule("segments must be UTF-8"))
}

/// The characters a decoded segment may not hold.
fn check_byte(byte: u8) -> Result<(), PathError> {
    match byte {
        b'\\' => Err(PathError::rule("'\\' is not allowed")),
        b';' => Err(PathError::rule("';' parameters are not allowed")),
        b if b < 0x20 || b == 0x7f => Err(PathError::rule("control characters are not allowed")),
        _ => Ok(()),
    }
}

/// A decoded segment made only of dots is a dot segment (`.`, `..`, or what a front end might
/// treat as one).
fn not_dots(decoded: &[u8]) -> Result<(), PathError> {
    if decoded.iter().all(|b| *b == b'.') {
        return Err(PathError::rule("'.' and '..' segments are not allowed"));
    }
    Ok(())
}

/// What an id that `is_id` refuses is told, in a path or a body.
pub const NOT_AN_ID: &str = "an id is 1 to 256 letters, digits, '_' and '-'";

/// Whether `s` is an id in the alphabet Azure uses for object ids, index and agent names:
/// ASCII letters, digits, `_` and `-`.
pub fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Deployment names may also hold `.` (never only dots: `parse` refused those).
pub fn is_deployment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// One segment for an upstream path: RFC 3986 `pchar`s stay, everything else is percent-encoded,
/// so the upstream decodes exactly the segment that was authorised.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/a/b/c` from segments (empty for none).
pub fn join<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        out.push_str(&encode_segment(segment.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn refused(path: &str) -> bool {
        CanonicalPath::parse(path).is_err()
    }

    #[test]
    fn dot_segments_are_refused_in_every_encoding_and_case() {
        for path in [
            "/api/v1/assistants/a/../b",
            "/api/v1/assistants/a/..",
            "/api/v1/assistants/./a",
            "/api/v1/assistants/%2e%2e/x",
            "/api/v1/assistants/%2E%2e/x",
            "/api/v1/assistants/.%2e/x",
            "/api/v1/assistants/%2e./x",
            "/api/v1/assistants/%2e",
            "/api/v1/threads/runs/.",
            "/api/v1/x/...",
        ] {
            assert!(refused(path), "{path}");
        }
    }

    #[test]
    fn ambiguous_separators_and_characters_are_refused() {
        for path in [
            "/api/v1//assistants",
            "/api/v1/assistants//",
            "/api/v1/assistants/a%2fb",
            "/api/v1/assistants/a%2Fb",
            "/api/v1/assistants/a%5cb",
            "/api/v1/assistants/a\\b",
            "/api/v1/assistants/a;v=1",
            "/api/v1/assistants/a%3bv=1",
            "/api/v1/assistants/a%00",
            "/api/v1/assistants/a%0a",
            "/api/v1/assistants/a%09",
            // The same characters unencoded (a segment with nothing to decode is checked as is).
            "/api/v1/assistants/a\tb",
            "/api/v1/assistants/a\u{7f}",
            "/api/v1/assistants/a\u{1}",
            "/api/v1/assistants/%252e%252e",
            "/api/v1/assistants/%zz",
            "/api/v1/assistants/%2",
            "api/v1",
        ] {
            assert!(refused(path), "{path}");
        }
    }

    #[test]
    fn one_trailing_slash_is_tolerated_and_segments_are_decoded() {
        let p = CanonicalPath::parse("/api/v1/Assistants/asst_1/").unwrap();
        assert_eq!(p.segments(), ["api", "v1", "Assistants", "asst_1"]);
        let p = CanonicalPath::parse("/api/v1/mcp/docs/a%20b").unwrap();
        assert_eq!(p.segments()[4], "a b");
        // Only the segment that had something to decode is a new string.
        assert!(matches!(p.segments()[3], Cow::Borrowed("docs")));
        assert!(matches!(p.segments()[4], Cow::Owned(_)));
        assert_eq!(join(p.segments()), "/api/v1/mcp/docs/a%20b");
        assert_eq!(CanonicalPath::parse("/").unwrap().segments().len(), 0);
    }

    #[test]
    fn id_alphabet() {
        assert!(is_id("asst_AbC-1"));
        assert!(!is_id("a.b"));
        assert!(!is_id(""));
        assert!(is_deployment_name("gpt-4.1"));
        assert!(!is_deployment_name("gpt/4"));
    }

    /// RFC 3986 remove_dot_segments after the decoding a permissive front end does.
    fn front_end_resolve(path: &str) -> Vec<String> {
        let decoded = path
            .replace("%2e", ".")
            .replace("%2E", ".")
            .replace("%2f", "/")
            .replace("%2F", "/")
            .replace("%5c", "/")
            .replace("%5C", "/")
            .replace('\\', "/");
        let mut out: Vec<String> = Vec::new();
        for segment in decoded.split('/').filter(|s| !s.is_empty()) {
            match segment {
                "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s.to_string()),
            }
        }
        out
    }

    /// Every `%XX` of `segment` as its byte (what an upstream finally reads a segment as).
    fn percent_decoded(segment: &str) -> String {
        let bytes = segment.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    proptest! {
        /// Whatever a client sends, an accepted path means to a front end exactly the segments
        /// the edge authorised, and the path the edge rebuilds for upstream means them too.
        #[test]
        fn accepted_paths_resolve_to_what_was_authorised(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("..".to_string()), Just(".".to_string()), Just("%2e%2e".to_string()),
                    Just("%2E.".to_string()), Just("".to_string()), Just("a%2fb".to_string()),
                    Just("a\\b".to_string()), Just("%5c".to_string()), Just("x;y".to_string()),
                    Just("%252e".to_string()), "[A-Za-z0-9_.%-]{1,8}",
                ],
                0..8,
            ),
            trailing in any::<bool>(),
        ) {
            let mut path = format!("/{}", parts.join("/"));
            if trailing { path.push('/'); }
            if let Ok(canonical) = CanonicalPath::parse(&path) {
                let authorised: Vec<String> =
                    canonical.segments().iter().map(|s| s.to_string()).collect();
                let rebuilt = join(&authorised);
                // The front end's segments, each decoded, are the ones authorised (`a%20b` and
                // `a b` are one segment).
                let resolved: Vec<String> =
                    front_end_resolve(&rebuilt).iter().map(|s| percent_decoded(s)).collect();
                prop_assert_eq!(resolved, authorised.clone());
                prop_assert_eq!(front_end_resolve(&path).len(), authorised.len());
                for segment in &authorised {
                    prop_assert!(segment != "." && segment != ".." && !segment.is_empty());
                    prop_assert!(!segment.contains('/') && !segment.contains('\\'));
                }
            }
        }
    }
}
