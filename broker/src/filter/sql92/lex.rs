//! The SQL92 selector's tokens.

use std::fmt;

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Name(String),
    Str(String),
    Long(i64),
    Double(f64),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Name(n) => write!(f, "'{n}'"),
            Kind::Str(s) => write!(f, "the string '{s}'"),
            Kind::Long(l) => write!(f, "the number {l}"),
            Kind::Double(d) => write!(f, "the number {d}"),
            Kind::Op(o) => write!(f, "'{o}'"),
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
            Kind::Comma => f.write_str("','"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) column: usize,
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |i: usize, message: String| ParseError { column: i + 1, message };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let kind = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Kind::LParen
            }
            ')' => {
                i += 1;
                Kind::RParen
            }
            ',' => {
                i += 1;
                Kind::Comma
            }
            '=' => {
                i += 1;
                Kind::Op("=")
            }
            '<' | '>' | '!' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('<', Some('>')) => ("<>", 2),
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('!', Some('=')) => ("<>", 2),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => return Err(err(i, "'!' must be followed by '='".into())),
                };
                i += len;
                Kind::Op(op)
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(start, "a string is not closed".into())),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                Kind::Str(s)
            }
            c if c.is_ascii_digit() || (c == '-' || c == '.') && next_is_digit(&chars, i) => {
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_digit()
                        || matches!(chars[i], '.' | 'e' | 'E')
                        || (matches!(chars[i], '+' | '-') && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                // Java's literal suffixes (`10L`, `1.5D`, `1.5F`) are read and dropped.
                let mut text: String = chars[start..i].iter().collect();
                if i < chars.len() && matches!(chars[i], 'l' | 'L' | 'd' | 'D' | 'f' | 'F') {
                    i += 1;
                }
                if text.starts_with('.') {
                    text.insert(0, '0');
                }
                if let Ok(l) = text.parse::<i64>() {
                    Kind::Long(l)
                } else if let Ok(d) = text.parse::<f64>() {
                    Kind::Double(d)
                } else {
                    return Err(err(start, format!("'{text}' is not a number")));
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '$' | '.'))
                {
                    i += 1;
                }
                Kind::Name(chars[start..i].iter().collect())
            }
            other => return Err(err(i, format!("unexpected character '{other}'"))),
        };
        tokens.push(Token { kind, column: start + 1 });
    }
    Ok(tokens)
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(|c| c.is_ascii_digit() || *c == '.')
}
