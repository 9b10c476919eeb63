//! Which messages a subscription takes: by tag (the queue entry's tag hash, no record read)
//! or by a SQL92 selector over the message's properties (the record's properties read, no
//! body decoded).

pub mod sql92;

use rocketraft_protocol::body::SubscriptionData;
use rocketraft_protocol::message::{find_property, RecordView};
use rocketraft_protocol::response_code;

use crate::admission::Refusal;

/// RocketMQ's expression types.
pub const TAG: &str = "TAG";
pub const SQL92: &str = "SQL92";

/// What the broker answers a SQL92 subscription when `enable_property_filter` is off
/// (RocketMQ's remark).
pub const SQL92_DISABLED: &str = "The broker does not support consumer to filter message by SQL92";

/// A subscription, compiled for one pull.
#[derive(Debug, Clone)]
pub enum Filter {
    /// By tag hash; empty = every message.
    Tags(SubscriptionData),
    /// By SQL92 selector.
    Sql(sql92::Expr),
}

impl Filter {
    /// Compiles a subscription expression of `expression_type` (`TAG` when absent).
    /// A SQL92 expression that does not parse is SUBSCRIPTION_PARSE_FAILED, with where it
    /// failed; SQL92 while property filtering is off, or an unknown type, SYSTEM_ERROR.
    pub fn compile(
        topic: &str,
        expression_type: Option<&str>,
        expression: &str,
        sub_version: i64,
        property_filter: bool,
    ) -> Result<Filter, Refusal> {
        match expression_type.map(str::trim).filter(|t| !t.is_empty()).unwrap_or(TAG) {
            t if t.eq_ignore_ascii_case(TAG) => {
                Ok(Filter::Tags(SubscriptionData::tag(topic, expression, sub_version)))
            }
            t if t.eq_ignore_ascii_case(SQL92) => {
                if !property_filter {
                    return Err(Refusal {
                        code: response_code::SYSTEM_ERROR,
                        remark: SQL92_DISABLED.to_owned(),
                    });
                }
                sql92::parse(expression).map(Filter::Sql).map_err(|e| Refusal {
                    code: response_code::SUBSCRIPTION_PARSE_FAILED,
                    remark: format!("the SQL92 expression [{expression}] does not parse {e}"),
                })
            }
            other => Err(Refusal {
                code: response_code::SYSTEM_ERROR,
                remark: format!("the expression type {other} is not TAG or SQL92"),
            }),
        }
    }

    /// Whether a queue entry with this tag hash may match (a SQL92 filter reads the record).
    pub fn matches_code(&self, tags_code: i64) -> bool {
        match self {
            Filter::Tags(sub) => sub.matches_all() || sub.code_set.contains(&(tags_code as i32)),
            Filter::Sql(_) => true,
        }
    }

    /// Whether the filter must read each record's properties.
    pub fn reads_records(&self) -> bool {
        matches!(self, Filter::Sql(_))
    }

    /// Whether a record (that passed [`Filter::matches_code`]) matches.
    pub fn matches_record(&self, record: &RecordView<'_>) -> bool {
        match self {
            Filter::Tags(_) => true,
            Filter::Sql(expr) => {
                let properties = record.properties;
                expr.matches(&|name| find_property(properties, name))
            }
        }
    }

    /// Keeps the records of `body` (concatenated CommitLog records) that match; how many.
    /// From a record that does not decode on, the rest is kept as it is (the client reports
    /// it; the filter must not hide data it cannot read, nor guess where records resume).
    pub fn retain_records(&self, body: &mut Vec<u8>) -> usize {
        let mut kept = Vec::with_capacity(body.len());
        let mut count = 0;
        let mut at = 0;
        while at < body.len() {
            let size = body.get(at..at + 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let end = size.and_then(|s| usize::try_from(s).ok()).map(|s| at.saturating_add(s));
            let record = end.filter(|e| *e <= body.len()).map(|e| &body[at..e]);
            let view = record.and_then(|r| RecordView::decode(r).ok());
            let Some(view) = view.filter(|v| v.total_size > 0) else {
                kept.extend_from_slice(&body[at..]);
                count += 1;
                break;
            };
            if self.matches_record(&view) {
                kept.extend_from_slice(&body[at..at + view.total_size]);
                count += 1;
            }
            at += view.total_size;
        }
        *body = kept;
        count
    }
}

#[cfg(test)]
mod tests;
