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
//! Evaluation follows SQL's three-valued logic: a comparison with an absent property is
//! unknown, NOT of unknown is unknown, and a message matches only when the whole expression is
//! true. Properties are strings on the wire, read as the literal's type as RocketMQ reads them
//! (Java's `Long.valueOf`, `Double.valueOf`, `Boolean.valueOf`): a property that does not read
//! so makes the whole selector false for that message (RocketMQ's evaluation fails), never an
//! error for the pull. Ordering comparisons and BETWEEN take number literals only (others are
//! refused when parsing, as is a BETWEEN whose low bound is above its high one); CONTAINS,
//! STARTSWITH and ENDSWITH are false, negated or not, for an absent property or an empty
//! operand. One difference remains: `NOT a = 1` reads as `NOT (a = 1)` here, as
//! `(NOT a) = 1` in RocketMQ (which never matches); write the parentheses.

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

/// A property that does not read as the literal it is compared with (RocketMQ's conversion
/// fails): the whole selector does not match that message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WrongType;

impl Expr {
    /// Whether a message whose properties `lookup` reads matches: the selector is true. A
    /// property of the wrong type for a comparison makes the whole selector false for that
    /// message, as RocketMQ's evaluation fails then.
    pub fn matches<'a>(&self, lookup: &impl Fn(&str) -> Option<&'a str>) -> bool {
        matches!(self.eval(lookup), Ok(Some(true)))
    }

    /// True, false, or unknown (`None`, SQL's NULL).
    fn eval<'a>(
        &self,
        lookup: &impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Option<bool>, WrongType> {
        Ok(match self {
            Expr::Const(b) => Some(*b),
            Expr::And(all) => {
                let mut result = Some(true);
                for e in all {
                    match e.eval(lookup)? {
                        Some(false) => return Ok(Some(false)),
                        None => result = None,
                        Some(true) => {}
                    }
                }
                result
            }
            Expr::Or(any) => {
                let mut result = Some(false);
                for e in any {
                    match e.eval(lookup)? {
                        Some(true) => return Ok(Some(true)),
                        None => result = None,
                        Some(false) => {}
                    }
                }
                result
            }
            Expr::Not(a) => a.eval(lookup)?.map(|b| !b),
            Expr::Compare { name, cmp, value } => match lookup(name) {
                Some(v) => Some(compare(v, *cmp, value)?),
                None => None,
            },
            Expr::Between { name, low, high, negated } => match lookup(name) {
                Some(v) => {
                    let inside = compare(v, Cmp::Ge, low)? && compare(v, Cmp::Le, high)?;
                    Some(inside != *negated)
                }
                None => None,
            },
            Expr::In { name, values, negated } => {
                lookup(name).map(|v| values.iter().any(|x| x == v) != *negated)
            }
            Expr::IsNull { name, negated } => Some(lookup(name).is_none() != *negated),
            // RocketMQ's string tests are false, negated or not, for an absent property or an
            // empty operand.
            Expr::Text { name, test, value, negated } => match lookup(name) {
                Some(v) if !value.is_empty() => {
                    let found = match test {
                        StrTest::Contains => v.contains(value.as_str()),
                        StrTest::StartsWith => v.starts_with(value.as_str()),
                        StrTest::EndsWith => v.ends_with(value.as_str()),
                    };
                    Some(found != *negated)
                }
                _ => Some(false),
            },
        })
    }
}

/// A property's value against a literal, read as the literal's type as Java reads it
/// (`Long.valueOf`, `Double.valueOf`, `Boolean.valueOf`); ordering takes numbers only (the
/// parser refuses the others).
fn compare(property: &str, cmp: Cmp, literal: &Literal) -> Result<bool, WrongType> {
    use std::cmp::Ordering;
    let order = match literal {
        Literal::Long(l) => property.parse::<i64>().map_err(|_| WrongType)?.cmp(l),
        Literal::Double(d) => {
            let p = property.parse::<f64>().map_err(|_| WrongType)?;
            p.partial_cmp(d).ok_or(WrongType)?
        }
        Literal::Bool(b) => {
            let p = property.eq_ignore_ascii_case("true");
            return match cmp {
                Cmp::Eq => Ok(p == *b),
                Cmp::Ne => Ok(p != *b),
                _ => Err(WrongType),
            };
        }
        Literal::Str(s) => {
            return match cmp {
                Cmp::Eq => Ok(property == s),
                Cmp::Ne => Ok(property != s),
                _ => Err(WrongType),
            };
        }
    };
    Ok(match cmp {
        Cmp::Eq => order == Ordering::Equal,
        Cmp::Ne => order != Ordering::Equal,
        Cmp::Gt => order == Ordering::Greater,
        Cmp::Ge => order != Ordering::Less,
        Cmp::Lt => order == Ordering::Less,
        Cmp::Le => order != Ordering::Greater,
    })
}
