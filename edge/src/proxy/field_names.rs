//! Member names of request bodies as an upstream that ignores case could read them. Azure's
//! services match JSON member names without regard to case, so a rule about `file_id` or
//! `data_sources` must also see `File_Id`, `DATA_SOURCES` and spellings through letters whose
//! Unicode case mapping is ASCII (`ı` and `İ` for `i`, `ſ` for `s`, `ß` for `ss`, `ﬁ` for `fi`,
//! the Kelvin sign for `k`). Two tools: a prefilter that tells, in a few hundred instructions,
//! that a body cannot hold any of some names; and the folding of one name.

use memchr::memmem;

/// Bytes with the 0x20 bit set: ASCII letters of either case read as lower case (other bytes
/// may meet, which only lets more bodies through to the walk behind the prefilter).
fn fold(bytes: &mut [u8]) {
    for b in bytes {
        *b |= 0x20;
    }
}

/// Looks for needles (ASCII letters, digits and `_`) in a body, in any case.
pub struct Prefilter {
    finders: Vec<memmem::Finder<'static>>,
    /// The longest needle less one byte: windows overlap by that much.
    overlap: usize,
}

impl Prefilter {
    pub fn new(needles: &[&str]) -> Self {
        let finders = needles
            .iter()
            .map(|needle| {
                let mut folded = needle.as_bytes().to_vec();
                fold(&mut folded);
                memmem::Finder::new(&folded).into_owned()
            })
            .collect();
        let overlap = needles.iter().map(|n| n.len()).max().unwrap_or(1) - 1;
        Self { finders, overlap }
    }

    /// Whether `body` may spell one of the needles in a member name: false only when no
    /// spelling of any can be in it. An ASCII body without a `\u` escape spells a name only
    /// with its ASCII letters, in either case; any other body may spell it otherwise, so it
    /// is always let through.
    pub fn may_hold(&self, body: &[u8]) -> bool {
        if !body.is_ascii()
            || memchr::memchr_iter(b'\\', body).any(|at| body.get(at + 1) == Some(&b'u'))
        {
            return true;
        }
        // Folded a window at a time; windows overlap by the longest needle less one byte, so
        // a needle across a window's end is seen whole in the next.
        let mut buffer = [0u8; 1024];
        let mut start = 0;
        loop {
            let end = body.len().min(start + buffer.len());
            let window = &mut buffer[..end - start];
            window.copy_from_slice(&body[start..end]);
            fold(window);
            if self.finders.iter().any(|f| f.find(window).is_some()) {
                return true;
            }
            if end == body.len() {
                return false;
            }
            start = end - self.overlap;
        }
    }
}

/// `name` in ASCII lower case, each letter through its Unicode case mappings (the ASCII of its
/// upper case mapping, else of its lower case one, else itself), or `None` once the folding
/// passes `limit` bytes: a long name costs no more than a short one.
pub fn folded(name: &str, limit: usize) -> Option<String> {
    if name.is_ascii() {
        return (name.len() <= limit).then(|| name.to_ascii_lowercase());
    }
    let mut folded = String::with_capacity(limit + 4);
    for c in name.chars() {
        let mut upper = c.to_uppercase().filter(char::is_ascii).peekable();
        let mut lower = c.to_lowercase().filter(char::is_ascii).peekable();
        if upper.peek().is_some() {
            folded.extend(upper.map(|a| a.to_ascii_lowercase()));
        } else if lower.peek().is_some() {
            folded.extend(lower.map(|a| a.to_ascii_lowercase()));
        } else {
            folded.push(c);
        }
        if folded.len() > limit {
            return None;
        }
    }
    Some(folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_through_their_letters_case_mappings() {
        for (spelled, expected) in [
            ("File_Id", "file_id"),
            ("f\u{131}le_id", "file_id"),
            ("F\u{130}LE_ID", "file_id"),
            ("a\u{df}istant_id", "assistant_id"),
            ("data_\u{17f}ources", "data_sources"),
            ("\u{fb01}le_ids", "file_ids"),
            ("\u{212a}ey", "key"),
        ] {
            assert_eq!(folded(spelled, 20).as_deref(), Some(expected), "{spelled}");
        }
        assert_eq!(folded("a\u{e9}ent", 20).as_deref(), Some("a\u{e9}ent"));
        assert_eq!(folded(&"\u{131}".repeat(100_000), 20), None);
        assert_eq!(folded(&"a".repeat(21), 20), None);
    }

    #[test]
    fn the_prefilter_sees_a_needle_in_any_case_across_window_ends() {
        let prefilter = Prefilter::new(&["_id", "conversation"]);
        for at in (990..1030).chain(2000..2040).chain([0, 9000]) {
            for spelled in ["CONVERSATION", "x_Id", "conversation"] {
                let body = format!("{{\"m\":\"{}\",\"{spelled}\":1}}", "m".repeat(at));
                assert!(prefilter.may_hold(body.as_bytes()), "{spelled} after {at}");
            }
        }
        assert!(!prefilter.may_hold(b"{\"messages\": \"conversatio n\"}"));
        assert!(prefilter.may_hold(b"{\"\\u0063onversation\": 1}"));
        assert!(prefilter.may_hold("{\"caf\u{e9}\": 1}".as_bytes()));
    }
}
