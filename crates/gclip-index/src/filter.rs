//! Marqo's filter language: `field:value`, `field:(a value with spaces)`, `field:[lo TO hi]`
//! with `*` for an open end, `field IN (a, b, (c d))`, `AND` / `OR` / prefix `NOT`, parentheses
//! and `\` escapes. AND binds tighter than OR. Errors carry the byte position of the problem.

use crate::error::FilterError;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Eq {
        field: String,
        value: String,
    },
    Range {
        field: String,
        lo: Option<f64>,
        hi: Option<f64>,
    },
    In {
        field: String,
        values: Vec<String>,
    },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

impl Filter {
    /// Parses a filter string.
    pub fn parse(s: &str) -> Result<Filter, FilterError> {
        let mut p = Parser { s, pos: 0 };
        p.skip_ws();
        if p.pos >= s.len() {
            return Err(p.err("empty filter", 0));
        }
        let f = p.or()?;
        p.skip_ws();
        if p.pos < s.len() {
            return Err(if p.peek() == Some(')') {
                p.err("unbalanced `)`", p.pos)
            } else {
                p.err("expected AND or OR between terms", p.pos)
            });
        }
        Ok(f)
    }

    /// Whether a document with these fields (and this id) matches. `max_str` is the index's
    /// filterStringMaxLength: longer strings are not matched by equality.
    pub fn matches(&self, id: &str, fields: &Map<String, Value>, max_str: usize) -> bool {
        match self {
            Filter::Eq { field, value } => eq_field(field, value, id, fields, max_str),
            Filter::In { field, values } => values
                .iter()
                .any(|v| eq_field(field, v, id, fields, max_str)),
            Filter::Range { field, lo, hi } => match fields.get(field) {
                Some(Value::Number(n)) => {
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    lo.is_none_or(|l| x >= l) && hi.is_none_or(|h| x <= h)
                }
                _ => false,
            },
            Filter::And(a, b) => a.matches(id, fields, max_str) && b.matches(id, fields, max_str),
            Filter::Or(a, b) => a.matches(id, fields, max_str) || b.matches(id, fields, max_str),
            Filter::Not(a) => !a.matches(id, fields, max_str),
        }
    }
}

fn eq_field(
    field: &str,
    value: &str,
    id: &str,
    fields: &Map<String, Value>,
    max_str: usize,
) -> bool {
    if field == "_id" {
        return id == value;
    }
    match fields.get(field) {
        Some(v) => eq_value(v, value, max_str),
        None => false,
    }
}

fn eq_value(v: &Value, value: &str, max_str: usize) -> bool {
    match v {
        Value::String(s) => s.len() <= max_str && s == value,
        Value::Bool(b) => value == if *b { "true" } else { "false" },
        Value::Number(n) => match (value.parse::<f64>(), n.as_f64()) {
            (Ok(x), Some(y)) => x == y,
            _ => false,
        },
        Value::Array(items) => items.iter().any(|i| match i {
            Value::String(s) => s.len() <= max_str && s == value,
            _ => false,
        }),
        _ => false,
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, message: impl Into<String>, position: usize) -> FilterError {
        FilterError {
            message: message.into(),
            position,
            filter: self.s.to_string(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The upper-case keyword `kw` followed by a boundary, consumed when present.
    fn keyword(&mut self, kw: &str) -> bool {
        let rest = &self.s[self.pos..];
        if rest.starts_with(kw)
            && rest[kw.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(')
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn at_keyword(&self, kw: &str) -> bool {
        let rest = &self.s[self.pos..];
        rest.starts_with(kw)
            && rest[kw.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(')
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        loop {
            self.skip_ws();
            if !self.keyword("OR") {
                return Ok(left);
            }
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        loop {
            self.skip_ws();
            if !self.keyword("AND") {
                return Ok(left);
            }
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.keyword("NOT") {
            let inner = self.unary()?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => return Err(self.err("expected a term, found the end of the filter", start)),
            Some('(') => {
                self.bump();
                let inner = self.or()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.err("unbalanced `(`: expected `)`", self.pos));
                }
                self.bump();
                return Ok(inner);
            }
            Some(')') => return Err(self.err("unexpected `)`: expected a term", start)),
            _ => {}
        }
        for kw in ["AND", "OR"] {
            if self.at_keyword(kw) {
                return Err(self.err(format!("unexpected `{kw}`: expected a term"), start));
            }
        }
        let field = self.field_name()?;
        self.skip_ws();
        if self.keyword("IN") {
            self.skip_ws();
            let values = self.in_list()?;
            return Ok(Filter::In { field, values });
        }
        if self.peek() != Some(':') {
            return Err(self.err(
                format!("expected `:` or IN after field `{field}`"),
                self.pos,
            ));
        }
        self.bump();
        match self.peek() {
            Some('[') => self.range(field),
            Some('(') => {
                self.bump();
                let value = self.value_until(')', true)?;
                Ok(Filter::Eq { field, value })
            }
            Some(c) if !c.is_whitespace() => {
                let value = self.bare_value()?;
                Ok(Filter::Eq { field, value })
            }
            _ => Err(self.err(format!("expected a value after `{field}:`"), self.pos)),
        }
    }

    fn field_name(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.bump();
                match self.bump() {
                    Some(e) => name.push(e),
                    None => return Err(self.err("`\\` at the end of the filter", start)),
                }
            } else if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if name.is_empty() {
            return Err(self.err("expected a field name", start));
        }
        Ok(name)
    }

    /// A value up to whitespace or `)`, with `\` escapes.
    fn bare_value(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let mut v = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                self.bump();
                match self.bump() {
                    Some(e) => v.push(e),
                    None => return Err(self.err("`\\` at the end of the filter", self.pos)),
                }
            } else if c.is_whitespace() || c == ')' || c == '(' {
                break;
            } else {
                v.push(c);
                self.bump();
            }
        }
        if v.is_empty() {
            return Err(self.err("expected a value", start));
        }
        Ok(v)
    }

    /// Everything up to an unescaped `close`, consumed; inner whitespace kept (trimmed ends).
    fn value_until(&mut self, close: char, allow_empty: bool) -> Result<String, FilterError> {
        let open = self.pos.saturating_sub(1);
        let mut v = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.err(format!("unbalanced bracket: expected `{close}`"), open))
                }
                Some('\\') => match self.bump() {
                    Some(e) => v.push(e),
                    None => return Err(self.err("`\\` at the end of the filter", self.pos)),
                },
                Some(c) if c == close => break,
                Some(c) => v.push(c),
            }
        }
        let v = v.trim().to_string();
        if v.is_empty() && !allow_empty {
            return Err(self.err("empty value", open));
        }
        Ok(v)
    }

    fn range(&mut self, field: String) -> Result<Filter, FilterError> {
        let open = self.pos;
        self.bump(); // [
        let body_start = self.pos;
        let body = self.value_until(']', false)?;
        // Find `TO` (any case) as a separate word.
        let words: Vec<&str> = body.split_whitespace().collect();
        let to = words.iter().position(|w| w.eq_ignore_ascii_case("to"));
        let (lo, hi) = match (to, words.len()) {
            (Some(1), 3) => (words[0], words[2]),
            _ => {
                return Err(self.err(
                    "a range must read `[low TO high]` (use `*` for an open end)",
                    open,
                ))
            }
        };
        let bound = |w: &str, which: &str| -> Result<Option<f64>, FilterError> {
            if w == "*" {
                return Ok(None);
            }
            w.parse::<f64>().map(Some).map_err(|_| {
                let at = self.s[body_start..]
                    .find(w)
                    .map_or(open, |i| body_start + i);
                self.err(format!("the {which} bound `{w}` is not a number"), at)
            })
        };
        Ok(Filter::Range {
            field,
            lo: bound(lo, "lower")?,
            hi: bound(hi, "upper")?,
        })
    }

    fn in_list(&mut self) -> Result<Vec<String>, FilterError> {
        if self.peek() != Some('(') {
            return Err(self.err("expected `(` after IN", self.pos));
        }
        let open = self.pos;
        self.bump();
        let mut values = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.err("unbalanced `(` of IN list", open)),
                Some('(') => {
                    self.bump();
                    values.push(self.value_until(')', false)?);
                }
                Some(')') if values.is_empty() => {
                    return Err(self.err("empty IN list", open));
                }
                _ => {
                    let start = self.pos;
                    let mut v = String::new();
                    while let Some(c) = self.peek() {
                        if c == '\\' {
                            self.bump();
                            if let Some(e) = self.bump() {
                                v.push(e);
                            }
                        } else if c == ',' || c == ')' {
                            break;
                        } else {
                            v.push(c);
                            self.bump();
                        }
                    }
                    let v = v.trim().to_string();
                    if v.is_empty() {
                        return Err(self.err("empty value in IN list", start));
                    }
                    values.push(v);
                }
            }
            self.skip_ws();
            match self.bump() {
                Some(',') => continue,
                Some(')') => return Ok(values),
                None => return Err(self.err("unbalanced `(` of IN list", open)),
                _ => {
                    return Err(
                        self.err("expected `,` or `)` in IN list", self.pos.saturating_sub(1))
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_binds_tighter() {
        let f = Filter::parse("a:1 OR b:2 AND c:3").unwrap();
        assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))));
    }
}
