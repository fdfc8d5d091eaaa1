//! How the mock reads a request path: as permissively as Azure's front ends (ASP.NET Core/Kestrel,
//! nginx) do, so that a proxy which authorises one path and forwards another string is caught.
//! `normalise` decodes `%2e` to `.`, turns `%2f`, `%5c` and `\` into `/`, merges repeated slashes
//! and removes dot segments (RFC 3986 §5.2.4); `Route` then matches literal segments
//! case-insensitively and tolerates a trailing slash, as ASP.NET routing does. Ids stay as sent.

/// The path a permissive front end would route on.
pub fn normalise(raw: &str) -> String {
    let decoded = decode_separators(raw);
    let merged = merge_slashes(&decoded);
    let resolved = remove_dot_segments(&merged);
    if resolved.is_empty() {
        "/".to_string()
    } else {
        resolved
    }
}

/// `%2e` → `.`; `%2f`, `%5c` and `\` → `/` (any hex case). Other escapes stay as they are.
fn decode_separators(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let decoded = match (bytes[i + 1], bytes[i + 2].to_ascii_lowercase()) {
                (b'2', b'e') => Some('.'),
                (b'2', b'f') | (b'5', b'c') => Some('/'),
                _ => None,
            };
            if let Some(c) = decoded {
                out.push(c);
                i += 3;
                continue;
            }
        }
        let c = raw[i..].chars().next().expect("in bounds");
        out.push(if c == '\\' { '/' } else { c });
        i += c.len_utf8();
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// RFC 3986 §5.2.4, step by step.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            pop_segment(&mut output);
        } else if input == "/.." {
            input = "/".to_string();
            pop_segment(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
}

/// Removes the last segment of `output` and its preceding `/`, if any.
fn pop_segment(output: &mut String) {
    match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    }
}

/// A normalised path split into segments, matched case-insensitively on its literals.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    segments: Vec<&'a str>,
    lower: Vec<String>,
}

impl<'a> Route<'a> {
    /// Empty segments (a trailing slash) are dropped.
    pub fn new(path: &'a str) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let lower = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
        Self { segments, lower }
    }

    /// The segments in lower case: what routes are matched against.
    pub fn shape(&self) -> Vec<&str> {
        self.lower.iter().map(String::as_str).collect()
    }

    /// Segment `i` as sent (ids are case-sensitive).
    pub fn seg(&self, i: usize) -> &'a str {
        self.segments.get(i).copied().unwrap_or("")
    }

    /// The route after its first `n` segments.
    pub fn skip(&self, n: usize) -> Route<'a> {
        Route {
            segments: self.segments.iter().skip(n).copied().collect(),
            lower: self.lower.iter().skip(n).cloned().collect(),
        }
    }

    /// Whether the route begins with these literal segments (any case).
    pub fn starts_with(&self, literals: &[&str]) -> bool {
        literals.len() <= self.lower.len()
            && literals
                .iter()
                .zip(&self.lower)
                .all(|(literal, segment)| literal.eq_ignore_ascii_case(segment))
    }

    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// The value of `name` in a query string (no percent-decoding: ids and enums need none).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_resolve_as_a_front_end_would() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            (
                "/api/v/assistants/asst_1/../asst_2",
                "/api/v/assistants/asst_2",
            ),
            // A trailing dot segment leaves a trailing slash (RFC 3986), which routes ignore.
            ("/api/v/assistants/asst_1/..", "/api/v/assistants/"),
            ("/api/v/assistants/asst_1/.", "/api/v/assistants/asst_1/"),
            (
                "/api/v/threads/runs/../../assistants/x",
                "/api/v/assistants/x",
            ),
            ("/../../etc", "/etc"),
            ("/a/..", "/"),
            ("/..", "/"),
            ("/", "/"),
            ("/a/b/", "/a/b/"),
            ("/a/.../b", "/a/.../b"),
            ("/a/..b/c", "/a/..b/c"),
        ];
        for (raw, expected) in cases {
            assert_eq!(normalise(raw), expected, "{raw}");
        }
    }

    #[test]
    fn encoded_dots_in_any_case_are_dot_segments() {
        for dots in ["%2e%2e", "%2E%2e", "%2E%2E", ".%2e", "%2e.", ".%2E"] {
            let raw = format!("/p/assistants/asst_1/{dots}/asst_2");
            assert_eq!(normalise(&raw), "/p/assistants/asst_2", "{raw}");
        }
        for dot in ["%2e", "%2E"] {
            assert_eq!(normalise(&format!("/p/{dot}/x")), "/p/x");
        }
    }

    #[test]
    fn encoded_slashes_backslashes_and_empty_segments_become_separators() {
        assert_eq!(normalise("/p/assistants%2fasst_2"), "/p/assistants/asst_2");
        assert_eq!(normalise("/p/assistants%2Fasst_2"), "/p/assistants/asst_2");
        assert_eq!(normalise("/p/assistants%5casst_2"), "/p/assistants/asst_2");
        assert_eq!(normalise("/p/assistants%5Casst_2"), "/p/assistants/asst_2");
        assert_eq!(normalise("/p/assistants\\asst_2"), "/p/assistants/asst_2");
        assert_eq!(
            normalise("//p///assistants//asst_2"),
            "/p/assistants/asst_2"
        );
        assert_eq!(
            normalise("/p/assistants/asst_1%2f..%2f..%2fthreads"),
            "/p/threads"
        );
        assert_eq!(normalise("/p/x\\..\\..\\y"), "/y");
    }

    #[test]
    fn other_escapes_and_characters_are_left_alone() {
        assert_eq!(normalise("/p/a%00b;c=1/%41"), "/p/a%00b;c=1/%41");
        assert_eq!(normalise("/p/a%2"), "/p/a%2");
        assert_eq!(normalise("/p/a%"), "/p/a%");
        assert_eq!(normalise("/p/é/x"), "/p/é/x");
    }

    #[test]
    fn routes_match_literals_in_any_case_and_tolerate_a_trailing_slash() {
        let route = Route::new("/api/projects/Hack/Threads/thread_AbC/Runs/");
        assert_eq!(
            route.shape(),
            ["api", "projects", "hack", "threads", "thread_abc", "runs"]
        );
        assert!(route.starts_with(&["API", "projects"]));
        assert_eq!(route.seg(4), "thread_AbC", "ids keep their case");
        let tail = route.skip(3);
        assert_eq!(tail.len(), 3);
        assert_eq!(tail.seg(0), "Threads");
        assert!(Route::new("/").is_empty());
    }

    #[test]
    fn query_parameters_are_found_by_name() {
        assert_eq!(
            query_param("limit=20&after=asst_1", "after"),
            Some("asst_1")
        );
        assert_eq!(query_param("limit=20", "order"), None);
        assert_eq!(query_param("", "order"), None);
    }
}
