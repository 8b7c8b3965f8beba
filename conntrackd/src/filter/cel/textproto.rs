//! A reader of the protobuf text format, as far as the CEL conformance data
//! (`tests/data/cel-spec/*.textproto`) uses it: fields `name: scalar`,
//! `name { … }` / `name: { … }` / `name < … >`, lists `[a, b]`, `[ext.name]`
//! field names, `#` comments, adjacent strings concatenated, C escapes.
//! No schema: the conformance test interprets the fields (`simple.proto`).

/// A scalar as written: a string's bytes, or a number or identifier's text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(Vec<u8>),
    Word(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Field {
    Scalar(Scalar),
    Message(Message),
}

/// A message: its fields in order (a repeated field appears once per value).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Message(pub Vec<(String, Field)>);

impl Message {
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.0.iter().filter(move |(n, _)| n == name).map(|(_, f)| f)
    }

    pub fn get(&self, name: &str) -> Option<&Field> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    pub fn message(&self, name: &str) -> Option<&Message> {
        match self.get(name) {
            Some(Field::Message(m)) => Some(m),
            _ => None,
        }
    }

    pub fn messages<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        self.all(name).filter_map(|f| if let Field::Message(m) = f { Some(m) } else { None })
    }

    /// A string field as text (lossy UTF-8), or a word's text.
    pub fn text(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(Field::Scalar(Scalar::Str(b))) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Field::Scalar(Scalar::Word(w))) => Some(w.clone()),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        self.text(name).as_deref() == Some("true")
    }
}

/// Parses a whole file.
pub(crate) fn parse(text: &str) -> Result<Message, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let m = p.message(None)?;
    p.skip();
    if p.i < p.s.len() {
        return Err(p.error("unexpected text"));
    }
    Ok(m)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        let line = self.s[..self.i.min(self.s.len())].iter().filter(|&&b| b == b'\n').count() + 1;
        format!("line {line}: {what}")
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'#' {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.i += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip();
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn word(&mut self) -> String {
        self.skip();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+')) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn message(&mut self, close: Option<u8>) -> Result<Message, String> {
        let mut fields = Vec::new();
        loop {
            self.skip();
            match (self.peek(), close) {
                (None, None) => return Ok(Message(fields)),
                (None, Some(_)) => return Err(self.error("unclosed message")),
                (Some(c), Some(want)) if c == want => {
                    self.i += 1;
                    return Ok(Message(fields));
                }
                _ => {}
            }
            let name = if self.eat(b'[') {
                let start = self.i;
                while self.peek().is_some_and(|c| c != b']') {
                    self.i += 1;
                }
                let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                format!("[{name}]")
            } else {
                self.word()
            };
            if name.is_empty() {
                return Err(self.error("expected a field name"));
            }
            let colon = self.eat(b':');
            self.skip();
            if self.eat(b'[') {
                while !self.eat(b']') {
                    fields.push((name.clone(), self.value()?));
                    self.eat(b',');
                }
            } else if !colon && !matches!(self.peek(), Some(b'{' | b'<')) {
                return Err(self.error(&format!("expected ':' or '{{' after {name}")));
            } else {
                fields.push((name, self.value()?));
            }
            if !self.eat(b',') {
                self.eat(b';');
            }
        }
    }

    fn value(&mut self) -> Result<Field, String> {
        self.skip();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                Ok(Field::Message(self.message(Some(b'}'))?))
            }
            Some(b'<') => {
                self.i += 1;
                Ok(Field::Message(self.message(Some(b'>'))?))
            }
            Some(b'"' | b'\'') => {
                let mut bytes = Vec::new();
                while matches!(self.peek(), Some(b'"' | b'\'')) {
                    self.string(&mut bytes)?;
                    self.skip();
                }
                Ok(Field::Scalar(Scalar::Str(bytes)))
            }
            _ => {
                let w = self.word();
                if w.is_empty() {
                    return Err(self.error("expected a value"));
                }
                Ok(Field::Scalar(Scalar::Word(w)))
            }
        }
    }

    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let quote = self.s[self.i];
        self.i += 1;
        loop {
            let Some(c) = self.peek() else { return Err(self.error("unterminated string")) };
            self.i += 1;
            if c == quote {
                return Ok(());
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else { return Err(self.error("unterminated escape")) };
            self.i += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'a' => out.push(7),
                b'b' => out.push(8),
                b'f' => out.push(12),
                b'v' => out.push(11),
                b'0'..=b'7' => {
                    let mut v = u32::from(e - b'0');
                    for _ in 0..2 {
                        match self.peek() {
                            Some(d @ b'0'..=b'7') => {
                                v = v * 8 + u32::from(d - b'0');
                                self.i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push(u8::try_from(v).map_err(|_| self.error("octal escape above 255"))?);
                }
                b'x' => {
                    let v = self.hex(2, 1)?;
                    out.push(u8::try_from(v).map_err(|_| self.error("bad hex escape"))?);
                }
                b'u' | b'U' => {
                    let n = if e == b'u' { 4 } else { 8 };
                    let v = self.hex(n, n)?;
                    let ch = char::from_u32(v).ok_or_else(|| self.error("bad unicode escape"))?;
                    out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                }
                other => out.push(other),
            }
        }
    }

    fn hex(&mut self, max: usize, min: usize) -> Result<u32, String> {
        let start = self.i;
        while self.i - start < max && self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.i += 1;
        }
        if self.i - start < min {
            return Err(self.error("short hex escape"));
        }
        u32::from_str_radix(&String::from_utf8_lossy(&self.s[start..self.i]), 16).map_err(|e| self.error(&e.to_string()))
    }
}

#[test]
fn reads_the_shapes_the_conformance_files_use() {
    let m = parse("# c\nname: \"a\" 'b'\nsection {\n test { expr: \"1\\x41\\101\\u00e9\" value: { int64_value: -3 } }\n test < n: [1, 2] >\n}\nx: [{a: 1}, {a: 2}]\n[ext.y] { z: inf }")
        .unwrap();
    assert_eq!(m.text("name").as_deref(), Some("ab"));
    let tests: Vec<&Message> = m.message("section").unwrap().messages("test").collect();
    assert_eq!(tests[0].text("expr").as_deref(), Some("1AAé"));
    assert_eq!(tests[0].message("value").unwrap().text("int64_value").as_deref(), Some("-3"));
    assert_eq!(tests[1].all("n").count(), 2);
    assert_eq!(m.messages("x").count(), 2);
    assert_eq!(m.message("[ext.y]").unwrap().text("z").as_deref(), Some("inf"));
    assert!(parse("a { b: 1").is_err() && parse("a \"x\"").is_err());
}
