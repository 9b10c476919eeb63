//! The SQL92 selector's recursive-descent parser (the grammar is in the parent module).

use super::lex::{Kind, Token};
use super::{Cmp, Expr, Literal, ParseError, StrTest, DEPTH_MAX, IN_LIST_MAX};

pub(super) struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    end_column: usize,
}

impl Parser {
    pub(super) fn new(tokens: Vec<Token>, end_column: usize) -> Parser {
        Parser { tokens, at: 0, depth: 0, end_column }
    }

    /// `expr`, if every token was read.
    pub(super) fn end(&self, expr: Expr) -> Result<Expr, ParseError> {
        match self.tokens.get(self.at) {
            None => Ok(expr),
            Some(t) => Err(self.error_at(t.column, format!("unexpected {}", t.kind))),
        }
    }

    fn error_at(&self, column: usize, message: String) -> ParseError {
        ParseError { column, message }
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end_column, |t| t.column)
    }

    fn expected(&self, what: &str) -> ParseError {
        let found = match self.tokens.get(self.at) {
            Some(t) => t.kind.to_string(),
            None => "the end".into(),
        };
        self.error_at(self.column(), format!("expected {what}, found {found}"))
    }

    /// Whether the next token is the keyword `word` (consumed if so).
    fn keyword(&mut self, word: &str) -> bool {
        match self.tokens.get(self.at) {
            Some(Token { kind: Kind::Name(n), .. }) if n.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn peek_keyword(&self, offset: usize, word: &str) -> bool {
        matches!(self.tokens.get(self.at + offset),
            Some(Token { kind: Kind::Name(n), .. }) if n.eq_ignore_ascii_case(word))
    }

    fn descend(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(self
                .error_at(self.column(), format!("the expression nests deeper than {DEPTH_MAX}")));
        }
        Ok(())
    }

    pub(super) fn or(&mut self) -> Result<Expr, ParseError> {
        self.descend()?;
        let mut any = vec![self.and()?];
        while self.keyword("OR") {
            any.push(self.and()?);
        }
        self.depth -= 1;
        Ok(if any.len() == 1 { any.remove(0) } else { Expr::Or(any) })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut all = vec![self.not()?];
        while self.keyword("AND") {
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 { all.remove(0) } else { Expr::And(all) })
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("NOT") {
            self.descend()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.test()
    }

    fn test(&mut self) -> Result<Expr, ParseError> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err(self.expected("a condition"));
        };
        match token.kind {
            Kind::LParen => {
                self.at += 1;
                let inner = self.or()?;
                if !matches!(self.tokens.get(self.at), Some(Token { kind: Kind::RParen, .. })) {
                    return Err(self.expected("')'"));
                }
                self.at += 1;
                Ok(inner)
            }
            Kind::Name(ref n) if n.eq_ignore_ascii_case("TRUE") => {
                self.at += 1;
                Ok(Expr::Const(true))
            }
            Kind::Name(ref n) if n.eq_ignore_ascii_case("FALSE") => {
                self.at += 1;
                Ok(Expr::Const(false))
            }
            Kind::Name(ref n) if is_reserved(n) => Err(self.expected("a property name")),
            Kind::Name(name) => {
                self.at += 1;
                self.condition(name)
            }
            _ => Err(self.expected("a condition")),
        }
    }

    /// What follows a property name.
    fn condition(&mut self, name: String) -> Result<Expr, ParseError> {
        if let Some(Token { kind: Kind::Op(op), .. }) = self.tokens.get(self.at) {
            let cmp = match *op {
                "=" => Cmp::Eq,
                "<>" => Cmp::Ne,
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                "<" => Cmp::Lt,
                _ => Cmp::Le,
            };
            self.at += 1;
            // As RocketMQ: only numbers are ordered.
            let value =
                if matches!(cmp, Cmp::Eq | Cmp::Ne) { self.literal()? } else { self.number()? };
            return Ok(Expr::Compare { name, cmp, value });
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err(self.expected("NULL"));
            }
            return Ok(Expr::IsNull { name, negated });
        }
        let negated = self.peek_keyword(0, "NOT") && {
            self.at += 1;
            true
        };
        if self.keyword("BETWEEN") {
            let low = self.number()?;
            if !self.keyword("AND") {
                return Err(self.expected("AND"));
            }
            let column = self.column();
            let high = self.number()?;
            if as_f64(&low) > as_f64(&high) {
                return Err(
                    self.error_at(column, "BETWEEN's low bound is above its high one".into())
                );
            }
            return Ok(Expr::Between { name, low, high, negated });
        }
        if self.keyword("IN") {
            return self.in_list(name, negated);
        }
        for (word, test) in [
            ("CONTAINS", StrTest::Contains),
            ("STARTSWITH", StrTest::StartsWith),
            ("ENDSWITH", StrTest::EndsWith),
        ] {
            if self.keyword(word) {
                let value = self.string()?;
                return Ok(Expr::Text { name, test, value, negated });
            }
        }
        Err(self
            .expected("a comparison, BETWEEN, IN, IS [NOT] NULL, CONTAINS, STARTSWITH or ENDSWITH"))
    }

    fn in_list(&mut self, name: String, negated: bool) -> Result<Expr, ParseError> {
        if !matches!(self.tokens.get(self.at), Some(Token { kind: Kind::LParen, .. })) {
            return Err(self.expected("'(' after IN"));
        }
        self.at += 1;
        let mut values = vec![self.string()?];
        loop {
            match self.tokens.get(self.at).map(|t| &t.kind) {
                Some(Kind::Comma) => {
                    self.at += 1;
                    if values.len() == IN_LIST_MAX {
                        return Err(self.error_at(
                            self.column(),
                            format!("an IN list holds at most {IN_LIST_MAX} values"),
                        ));
                    }
                    values.push(self.string()?);
                }
                Some(Kind::RParen) => {
                    self.at += 1;
                    return Ok(Expr::In { name, values, negated });
                }
                _ => return Err(self.expected("',' or ')'")),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let lit = match self.tokens.get(self.at).map(|t| &t.kind) {
            Some(Kind::Str(s)) => Literal::Str(s.clone()),
            Some(Kind::Long(l)) => Literal::Long(*l),
            Some(Kind::Double(d)) => Literal::Double(*d),
            Some(Kind::Name(n)) if n.eq_ignore_ascii_case("TRUE") => Literal::Bool(true),
            Some(Kind::Name(n)) if n.eq_ignore_ascii_case("FALSE") => Literal::Bool(false),
            _ => return Err(self.expected("a string, number or boolean")),
        };
        self.at += 1;
        Ok(lit)
    }

    fn number(&mut self) -> Result<Literal, ParseError> {
        match self.literal()? {
            n @ (Literal::Long(_) | Literal::Double(_)) => Ok(n),
            _ => {
                self.at -= 1;
                Err(self.expected("a number"))
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match self.tokens.get(self.at).map(|t| &t.kind) {
            Some(Kind::Str(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.expected("a string")),
        }
    }
}

fn as_f64(number: &Literal) -> f64 {
    match number {
        Literal::Long(l) => *l as f64,
        Literal::Double(d) => *d,
        _ => f64::NAN,
    }
}

/// Words that cannot name a property.
fn is_reserved(word: &str) -> bool {
    const RESERVED: [&str; 13] = [
        "AND",
        "OR",
        "NOT",
        "BETWEEN",
        "IN",
        "IS",
        "NULL",
        "TRUE",
        "FALSE",
        "CONTAINS",
        "STARTSWITH",
        "ENDSWITH",
        "LIKE",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}
