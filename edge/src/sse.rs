//! A server-sent events parser for bodies the edge passes through but must understand (the event
//! that names a newly created object). Events may be split across chunks at any byte; lines end
//! with `\n`, `\r\n` or `\r` (the SSE specification); the buffer is bounded.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (empty: the default `message`).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

#[derive(Debug)]
pub struct SseParser {
    pending: Vec<u8>,
    event: String,
    data: Vec<String>,
    limit: usize,
    /// The previous chunk ended in `\r`: a `\n` opening the next one belongs to it.
    after_cr: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("an event stream line is longer than {0} bytes")]
pub struct LineTooLong(usize);

impl SseParser {
    pub fn new(limit: usize) -> Self {
        Self {
            pending: Vec::new(),
            event: String::new(),
            data: Vec::new(),
            limit,
            after_cr: false,
        }
    }

    /// Feeds one chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        let mut events = Vec::new();
        let mut chunk = chunk;
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        let mut start = 0;
        let mut i = 0;
        while i < chunk.len() {
            let byte = chunk[i];
            if byte == b'\n' || byte == b'\r' {
                self.pending.extend_from_slice(&chunk[start..i]);
                let line = std::mem::take(&mut self.pending);
                if let Some(event) = self.line(&line) {
                    events.push(event);
                }
                if byte == b'\r' {
                    if chunk.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    } else if i + 1 == chunk.len() {
                        self.after_cr = true;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        self.pending.extend_from_slice(&chunk[start..]);
        let held = self.pending.len() + self.data.iter().map(String::len).sum::<usize>();
        if held > self.limit {
            return Err(LineTooLong(self.limit));
        }
        Ok(events)
    }

    fn line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if self.data.is_empty() {
                self.event.clear();
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent {
                event: std::mem::take(&mut self.event),
                data,
            });
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = b"event: thread.created\r\ndata: {\"id\":\r\ndata: \"t\"}\r\n\r\n: comment\n\nevent: done\ndata: [DONE]\n\n";
        for cut in 0..stream.len() {
            let mut parser = SseParser::new(1024);
            let mut events = parser.push(&stream[..cut]).unwrap();
            events.extend(parser.push(&stream[cut..]).unwrap());
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "thread.created".into(),
                        data: "{\"id\":\n\"t\"}".into()
                    },
                    SseEvent {
                        event: "done".into(),
                        data: "[DONE]".into()
                    }
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_line_without_end_is_bounded() {
        let mut parser = SseParser::new(16);
        assert!(parser.push(&[b'a'; 64]).is_err());
    }
}
