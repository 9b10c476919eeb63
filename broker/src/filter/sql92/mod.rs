//! RocketMQ's SQL92 message selectors (`MessageSelector.bySql`): the grammar its broker
//! accepts, parsed into a tree once per subscription and evaluated over a message's
//! properties.
//!
//! The grammar (keywords in any case):
//! ```text
//! expr     := or
//! or       := and (OR and)*
//! and      := not (AND not)*
//! not      := NOT not | test
//! test     := '(' expr ')' | TRUE | FALSE
//!           | name cmp literal | name [NOT] BETWEEN number AND number
//!           | name [NOT] IN '(' string (',' string)* ')' | name IS [NOT] NULL
//!           | name [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string
//! cmp      := '=' | '<>' | '!=' | '>' | '>=' | '<' | '<='
//! literal  := string | number | TRUE | FALSE
//! ```
//! A name is a message property (user properties, and the system ones such as `TAGS` and
//! `KEYS`); literals are `'quoted strings'` (`''` is a quote), longs, doubles and booleans.
//!
//! Evaluation follows SQL's three-valued logic: a comparison with an absent property, or
//! with a value of another type (a property that does not read as the literal's type), is
//! unknown; NOT of unknown is unknown; a message matches only when the whole expression is
//! true. So a property of the wrong type makes the selector false for that message, never an
//! error. Properties are strings on the wire: one is compared to a number literal as a number
//! (a long, or a double if either side is), and to a boolean literal as `true`/`false`
//! (case-insensitive). Ordering comparisons and BETWEEN take numbers only.

use std::fmt;

mod lex;
mod parser;

use lex::lex;
use parser::Parser;

/// The longest expression accepted, in bytes.
pub const EXPRESSION_MAX_BYTES: usize = 4_096;
/// The deepest nesting accepted (parentheses and NOT, AND and OR chains count).
pub const DEPTH_MAX: usize = 64;
/// The most values one IN list holds.
pub const IN_LIST_MAX: usize = 1_024;

/// Why an expression was refused: where (a 1-based character column) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A literal of the expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Long(i64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrTest {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(bool),
    /// Every one true (a chain `a AND b AND c` is one node: only nesting adds depth).
    And(Vec<Expr>),
    /// One true.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare {
        name: String,
        cmp: Cmp,
        value: Literal,
    },
    Between {
        name: String,
        low: Literal,
        high: Literal,
        negated: bool,
    },
    In {
        name: String,
        values: Vec<String>,
        negated: bool,
    },
    IsNull {
        name: String,
        negated: bool,
    },
    Text {
        name: String,
        test: StrTest,
        value: String,
        negated: bool,
    },
}

/// Parses `text` as a selector.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    if text.len() > EXPRESSION_MAX_BYTES {
        return Err(ParseError {
            column: 1,
            message: format!(
                "the expression is {} bytes, over the limit of {EXPRESSION_MAX_BYTES}",
                text.len()
            ),
        });
    }
    let tokens = lex(text)?;
    let mut p = Parser::new(tokens, text.chars().count() + 1);
    let expr = p.or()?;
    p.end(expr)
}

impl Expr {
    /// Whether a message whose properties `lookup` reads matches.
    pub fn matches<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a str>) -> bool {
        self.eval(lookup) == Some(true)
    }

    /// True, false, or unknown (`None`).
    fn eval<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a str>) -> Option<bool> {
        match self {
            Expr::Const(b) => Some(*b),
            Expr::And(all) => {
                let mut result = Some(true);
                for e in all {
                    match e.eval(lookup) {
                        Some(false) => return Some(false),
                        None => result = None,
                        Some(true) => {}
                    }
                }
                result
            }
            Expr::Or(any) => {
                let mut result = Some(false);
                for e in any {
                    match e.eval(lookup) {
                        Some(true) => return Some(true),
                        None => result = None,
                        Some(false) => {}
                    }
                }
                result
            }
            Expr::Not(a) => a.eval(lookup).map(|b| !b),
            Expr::Compare { name, cmp, value } => compare(lookup(name)?, *cmp, value),
            Expr::Between { name, low, high, negated } => {
                let v = lookup(name)?;
                let inside = compare(v, Cmp::Ge, low)? && compare(v, Cmp::Le, high)?;
                Some(inside != *negated)
            }
            Expr::In { name, values, negated } => {
                let v = lookup(name)?;
                Some(values.iter().any(|x| x == v) != *negated)
            }
            Expr::IsNull { name, negated } => Some(lookup(name).is_none() != *negated),
            Expr::Text { name, test, value, negated } => {
                let v = lookup(name)?;
                let found = match test {
                    StrTest::Contains => v.contains(value.as_str()),
                    StrTest::StartsWith => v.starts_with(value.as_str()),
                    StrTest::EndsWith => v.ends_with(value.as_str()),
                };
                Some(found != *negated)
            }
        }
    }
}

/// A property's value against a literal; `None` when they are not of one type.
fn compare(property: &str, cmp: Cmp, literal: &Literal) -> Option<bool> {
    use std::cmp::Ordering;
    let order = match literal {
        Literal::Long(l) => match property.trim().parse::<i64>() {
            Ok(p) => p.cmp(l),
            Err(_) => property.trim().parse::<f64>().ok()?.partial_cmp(&(*l as f64))?,
        },
        Literal::Double(d) => property.trim().parse::<f64>().ok()?.partial_cmp(d)?,
        Literal::Bool(b) => {
            let p = match property {
                t if t.eq_ignore_ascii_case("true") => true,
                f if f.eq_ignore_ascii_case("false") => false,
                _ => return None,
            };
            return match cmp {
                Cmp::Eq => Some(p == *b),
                Cmp::Ne => Some(p != *b),
                _ => None,
            };
        }
        Literal::Str(s) => {
            return match cmp {
                Cmp::Eq => Some(property == s),
                Cmp::Ne => Some(property != s),
                _ => None,
            };
        }
    };
    Some(match cmp {
        Cmp::Eq => order == Ordering::Equal,
        Cmp::Ne => order != Ordering::Equal,
        Cmp::Gt => order == Ordering::Greater,
        Cmp::Ge => order != Ordering::Less,
        Cmp::Lt => order == Ordering::Less,
        Cmp::Le => order != Ordering::Greater,
    })
}
